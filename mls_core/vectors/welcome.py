"""welcome vectors: decrypt a Welcome, verify GroupInfo signature and confirmation tag."""

from __future__ import annotations

from typing import Any

from ..ciphersuite import get_suite
from ..framing import MLSMessage
from ..key_schedule import confirmation_tag, derive_epoch_secrets
from ..welcome import decrypt_group_info, decrypt_group_secrets, verify_group_info
from ._check import expect, expect_true, h


def check(v: dict[str, Any]) -> None:
    suite = get_suite(v["cipher_suite"])
    key_package = MLSMessage.decode(h(v["key_package"])).key_package
    welcome = MLSMessage.decode(h(v["welcome"])).welcome
    expect_true("key_package is an MLSMessage(KeyPackage)", key_package is not None)
    expect_true("welcome is an MLSMessage(Welcome)", welcome is not None)
    assert key_package is not None and welcome is not None

    secrets = decrypt_group_secrets(suite, welcome, key_package, h(v["init_priv"]))
    expect("psks", secrets.psks, ())
    group_info = decrypt_group_info(suite, welcome, secrets.joiner_secret, None)
    verify_group_info(suite, group_info, h(v["signer_pub"]))

    gc = group_info.group_context
    epoch = derive_epoch_secrets(suite, secrets.joiner_secret, None, gc.encode())
    expect("confirmation_tag",
           confirmation_tag(suite, epoch.confirmation_key, gc.confirmed_transcript_hash),
           group_info.confirmation_tag)
