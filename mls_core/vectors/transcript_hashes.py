"""transcript-hashes vectors: the confirmation_tag MAC and the confirmed/interim
transcript hash update over an AuthenticatedContent carrying a Commit (RFC 9420 §8.2)."""

from __future__ import annotations

from typing import Any

from ..ciphersuite import get_suite
from ..framing import AuthenticatedContent, ContentType
from ..key_schedule import verify_confirmation_tag
from ..transcript import update_transcript_hashes
from ._check import expect, expect_true, h


def check(v: dict[str, Any]) -> None:
    suite = get_suite(v["cipher_suite"])
    ac = AuthenticatedContent.decode(h(v["authenticated_content"]))
    expect("content_type", ac.content.content_type, ContentType.COMMIT)
    tag = ac.auth.confirmation_tag
    expect_true("auth.confirmation_tag present", tag is not None)
    confirmed_want = h(v["confirmed_transcript_hash_after"])
    verify_confirmation_tag(suite, h(v["confirmation_key"]), confirmed_want, tag or b"")
    confirmed, interim = update_transcript_hashes(
        suite, h(v["interim_transcript_hash_before"]), ac)
    expect("confirmed_transcript_hash_after", confirmed, confirmed_want)
    expect("interim_transcript_hash_after", interim, h(v["interim_transcript_hash_after"]))
