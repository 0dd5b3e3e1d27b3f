"""Tests of known upstream failures (``interop/known_failures.toml``, ``interop.runner.known``).

The matching rules are checked on their own, then end to end through ``play_config`` and
the CLI against in-process fake stacks (``FakeStack`` from ``test_runner``) whose Name
makes them look like ts-mls 1.6.4 and which answer one RPC with a ts-mls error text.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped, unused-ignore]
import pytest

from interop.run import main
from interop.runner.clients import Client
from interop.runner.config import Config, parse_config
from interop.runner.errors import ConfigError
from interop.runner.execute import Options, play_config
from interop.runner.known import (
    DEFAULT_PATH,
    KnownFailure,
    load_known_failures,
    match_known,
    parse_known_failures,
)
from interop.runner.results import dumps_go, go_results, known_summary_line, summary_lines
from tests.interop.test_runner import FakeStack

#: Error texts seen in real ``ours,ts-mls`` runs (suites 1-7 and 79-88), with the entry
#: explaining each.
REAL_ERRORS = [
    ("ts-mls-external-senders",
     "rpc error: code = InvalidArgument desc = ts-mls CodecError: Could not decode "
     "external_senders (ts-mls reads every external_senders extension as one "
     "ExternalSender, not as the RFC 9420 §12.1.8.1 vector)"),
    ("ts-mls-external-senders",
     "rpc error: code = InvalidArgument desc = ts-mls ValidationError: Could not decode "
     "external_sender extension"),
    ("ts-mls-external-pub-read",
     "rpc error: code = Internal desc = ts-mls CryptoError: DeserializeError: Invalid "
     "public key for the ciphersuite"),
    ("ts-mls-external-pub-read",  # X448 suites 4 and 6
     "rpc error: code = Internal desc = ts-mls CryptoError: DeserializeError: Invalid "
     "length of the key"),
    ("ts-mls-external-pub-read",  # X-Wing suites 83/84/87/88 (1216-byte key + prefix)
     "rpc error: code = Internal desc = ts-mls CryptoError: DeserializeError: Invalid "
     "key length: 1218"),
    ("ts-mls-external-pub-write",
     "rpc error: code = InvalidArgument desc = DecodeError: ExternalPub.external_pub: "
     "opaque<V>: truncated at offset 2: need 251 bytes, 30 left"),
    ("ts-mls-external-pub-write",
     "rpc error: code = InvalidArgument desc = DecodeError: ExternalPub.external_pub: "
     "opaque<V>: invalid varint prefix 0b11 at offset 0"),
    ("ts-mls-external-pub-write",
     "rpc error: code = InvalidArgument desc = DecodeError: ExternalPub: 17 trailing bytes "
     "at offset 15"),
    ("ts-mls-external-pub-write",
     "rpc error: code = Internal desc = CryptoError: invalid HPKE public key"),
    ("ts-mls-gce-without-path",
     "rpc error: code = InvalidArgument desc = ValidationError: §12.4: this Commit "
     "requires a path"),
    # interop/configs/ts-mls-unmerged-leaves.json and ts-mls-leaf-reuse.json
    ("ts-mls-unmerged-leaves",
     "rpc error: code = InvalidArgument desc = ts-mls ValidationError: non-blank intermediate "
     "node must list leaf node in its unmerged_leaves"),
    ("ts-mls-removed-leaf-reused",
     "rpc error: code = Internal desc = ts-mls InternalError: This error should never occur, "
     "if you see this please submit a bug report. Message: No overlap between provided "
     "private keys and update path"),
]
SENDERS_ERROR = REAL_ERRORS[0][1]
TS_MLS = ("ts-mls", "ts-mls 1.6.4")
OURS = ("mls-python", "mls-python 0.1")


@pytest.fixture(scope="module")
def shipped() -> tuple[KnownFailure, ...]:
    return load_known_failures()


# --- the shipped list -------------------------------------------------------------------


def test_shipped_list_is_well_formed(shipped: tuple[KnownFailure, ...]) -> None:
    assert shipped, "interop/known_failures.toml lists no entry"
    for entry in shipped:
        assert entry.client == "ts-mls" and entry.version == "ts-mls 1.6.4", entry.id
        assert re.search(r"RFC 9420 §\d+(\.\d+)*", entry.reason), entry.id
        assert entry.reason.endswith(".") and entry.reason.count(". ") == 0, entry.id
        assert entry.link.startswith(("http", "interop/")), entry.id


@pytest.mark.parametrize(("entry_id", "error"), REAL_ERRORS)
def test_shipped_patterns_explain_real_errors(
    shipped: tuple[KnownFailure, ...], entry_id: str, error: str
) -> None:
    found = match_known(shipped, error, [OURS, TS_MLS])
    assert found is not None and found.id == entry_id


def test_other_errors_are_not_explained(shipped: tuple[KnownFailure, ...]) -> None:
    for error in ("Member [bob] failed to agree on epoch authenticator",
                  "rpc error: code = Internal desc = ts-mls CryptoError: OpenError",
                  "rpc error: code = InvalidArgument desc = DecryptionError: HPKE AEAD "
                  "decryption failed",
                  "rpc error: code = InvalidArgument desc = DecodeError: Welcome: truncated",
                  # ts-mls's other tree and path checks stay failures
                  "rpc error: code = InvalidArgument desc = ts-mls ValidationError: Unmerged "
                  "leaf did not represent a non-blank descendant leaf node",
                  "rpc error: code = Internal desc = ts-mls InternalError: This error should "
                  "never occur, if you see this please submit a bug report. Message: Could "
                  "not find secret for root",
                  # the same words from another stack are not ts-mls's bug
                  "rpc error: code = InvalidArgument desc = ValidationError: non-blank "
                  "intermediate node must list leaf node in its unmerged_leaves",
                  "rpc error: code = Internal desc = InternalError: No overlap between "
                  "provided private keys and update path"):
        assert match_known(shipped, error, [OURS, TS_MLS]) is None


# --- matching rules ---------------------------------------------------------------------


def _entry(**overrides: str) -> dict[str, str]:
    values = {"id": "x", "client": "ts-mls", "version": "ts-mls 1.6.4",
              "error": "Could not decode", "reason": "Because RFC 9420 §1.",
              "link": "https://example.invalid/1"}
    values.update(overrides)
    return values


def test_match_needs_error_and_client_at_version() -> None:
    (entry,) = parse_known_failures({"failure": [_entry()]})
    assert match_known([entry], "ts-mls CodecError: Could not decode x", [OURS, TS_MLS])
    assert match_known([entry], "ts-mls CodecError: decoded fine", [OURS, TS_MLS]) is None
    # No ts-mls among the run's clients: the same text is an ordinary failure.
    assert match_known([entry], "Could not decode x", [OURS, OURS]) is None
    # Version gating: an upgraded ts-mls re-exposes the failure.
    assert match_known([entry], "Could not decode x", [("ts-mls", "ts-mls 1.7.0")]) is None
    # The stack is matched by kind, not by a Name that merely looks the same.
    assert match_known([entry], "Could not decode x", [("ours", "ts-mls 1.6.4")]) is None


def test_first_matching_entry_wins() -> None:
    known = parse_known_failures(
        {"failure": [_entry(id="a", error="decode"), _entry(id="b", error="Could")]}
    )
    found = match_known(known, "Could not decode", [TS_MLS])
    assert found is not None and found.id == "a"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"failure": {"id": "x"}}, "array of tables"),
        ({"failure": ["x"]}, "must be a table"),
        ({"failure": [_entry(reason="")]}, "'reason' must be a non-empty string"),
        ({"failure": [{k: v for k, v in _entry().items() if k != "link"}]},
         "'link' must be a non-empty string"),
        ({"failure": [_entry(error="(")]}, "bad 'error' pattern"),
        ({"failure": [_entry(), _entry()]}, "duplicate id 'x'"),
        ({"failure": [{**_entry(), "versions": "1"}]}, "unknown key 'versions'"),
    ],
)
def test_bad_entries_are_config_errors(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_known_failures(document)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[failure]\n")
    with pytest.raises(ConfigError, match="cannot read known failures"):
        load_known_failures(bad)
    with pytest.raises(ConfigError, match="cannot read known failures"):
        load_known_failures(tmp_path / "missing.toml")


def test_default_path_is_the_checked_in_file() -> None:
    assert DEFAULT_PATH.name == "known_failures.toml" and DEFAULT_PATH.parent.name == "interop"
    with DEFAULT_PATH.open("rb") as handle:
        assert "failure" in tomllib.load(handle)


# --- through the runner, against fake stacks --------------------------------------------


@dataclass
class FailingStack(FakeStack):
    """A fake stack that answers the RPCs in ``fail`` with INVALID_ARGUMENT and a text."""

    fail: dict[str, str] = field(default_factory=dict)

    def _method(self, name: str) -> Callable[[Any, grpc.ServicerContext], Any]:
        inner = super()._method(name)

        def call(request: Any, context: grpc.ServicerContext) -> Any:
            if name in self.fail:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, self.fail[name])
            return inner(request, context)

        return call


@pytest.fixture
def serve() -> Iterator[Callable[..., list[Client]]]:
    """Serve fake stacks in-process; returns connected Clients (kind from their Name)."""
    with ExitStack() as stack:

        def start(*stacks: FakeStack) -> list[Client]:
            clients = []
            for i, fake in enumerate(stacks):
                server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
                server.add_generic_rpc_handlers((fake.handler(),))
                port = server.add_insecure_port("127.0.0.1:0")
                server.start()
                stack.callback(server.stop, None)
                client = Client(label=f"stack{i}", address=f"127.0.0.1:{port}")
                stack.callback(client.close)
                client.connect(5)
                clients.append(client)
            return clients

        yield start


#: alice creates a group and adds bob; bob's JoinGroup is where the fake ts-mls fails.
JOIN = json.dumps({"scripts": {"s": [
    {"action": "createGroup", "actor": "alice"},
    {"action": "createKeyPackage", "actor": "bob"},
    {"action": "fullCommit", "actor": "alice", "byValue": [{"proposalType": "add",
                                                           "keyPackage": 1}],
     "joiners": ["bob"]},
]}})


def _config() -> Config:
    return parse_config(JOIN, name="t")


def _ours() -> FakeStack:
    return FakeStack(name="mls-python 0.1", suites=(1,))


def _ts(version: str = "1.6.4", error: str = SENDERS_ERROR.split("desc = ")[1]) -> FakeStack:
    return FailingStack(name=f"ts-mls {version}", suites=(1,), fail={"JoinGroup": error})


def _options(known: tuple[KnownFailure, ...], **kwargs: Any) -> Options:
    return Options(suite=1, rpc_timeout=10, known=known, **kwargs)


def test_runs_with_ts_mls_are_known_not_failed(
    serve: Callable[..., list[Client]], shipped: tuple[KnownFailure, ...]
) -> None:
    result = play_config(_config(), serve(_ours(), _ts()), _options(shipped, record=True))
    verdicts = {(tuple(r.actors.values()), r.encrypt): r.verdict for r in result.runs}
    for encrypt in (True, False):
        assert verdicts[(("stack0", "stack0"), encrypt)] == "passed"
        assert verdicts[(("stack1", "stack0"), encrypt)] == "passed"
        assert verdicts[(("stack0", "stack1"), encrypt)] == "known"
        assert verdicts[(("stack1", "stack1"), encrypt)] == "known"
    assert (result.count("passed"), result.failed, result.count("known")) == (4, 0, 4)
    lines = summary_lines(result)
    assert lines[0] == "t: 4 passed, 0 failed"
    reason = shipped[0].reason
    assert lines[1:] == [f"  known upstream failure: s: 4 runs (suite 1, private/public): "
                         f"{reason}"]
    assert known_summary_line([result]) == (
        "known upstream failures: 4 runs, not counted (--strict counts them as failed): "
        "ts-mls-external-senders (ts-mls 1.6.4) 4"
    )
    runs = json.loads(dumps_go(go_results(result)))["scripts"]["s"]
    marked = [run for run in runs if "known_failure" in run]
    assert len(marked) == 4 and all(run["failed_step"] == 2 for run in marked)
    assert marked[0]["known_failure"]["id"] == "ts-mls-external-senders"
    assert all("known_failure" not in run for run in runs if "error" not in run)


def test_matching_text_without_ts_mls_stays_a_failure(
    serve: Callable[..., list[Client]], shipped: tuple[KnownFailure, ...]
) -> None:
    ours_failing = FailingStack(name="mls-python 0.1", suites=(1,),
                                fail={"JoinGroup": SENDERS_ERROR.split("desc = ")[1]})
    result = play_config(_config(), serve(ours_failing), _options(shipped))
    assert (result.count("passed"), result.failed, result.count("known")) == (0, 2, 0)
    assert known_summary_line([result]) is None
    assert summary_lines(result)[1].startswith("  failed: s: 2 runs (suite 1, private/public)")


def test_other_ts_mls_version_stays_a_failure(
    serve: Callable[..., list[Client]], shipped: tuple[KnownFailure, ...]
) -> None:
    result = play_config(_config(), serve(_ours(), _ts("1.7.0")), _options(shipped))
    assert (result.count("passed"), result.failed, result.count("known")) == (4, 4, 0)


def test_unexplained_ts_mls_error_stays_a_failure(
    serve: Callable[..., list[Client]], shipped: tuple[KnownFailure, ...]
) -> None:
    clients = serve(_ours(), _ts(error="ts-mls CryptoError: OpenError"))
    result = play_config(_config(), clients, _options(shipped))
    assert (result.count("passed"), result.failed, result.count("known")) == (4, 4, 0)


def test_strict_mode_counts_known_failures(
    serve: Callable[..., list[Client]], shipped: tuple[KnownFailure, ...]
) -> None:
    result = play_config(_config(), serve(_ours(), _ts()), _options(()))
    assert (result.count("passed"), result.failed, result.count("known")) == (4, 4, 0)


@pytest.mark.parametrize(("flags", "status", "first_line"), [
    ([], 0, "t: 2 passed, 0 failed"),
    (["--strict"], 1, "t: 2 passed, 2 failed"),
    (["--no-known-failures"], 1, "t: 2 passed, 2 failed"),
])
def test_cli_known_failures_and_strict(
    flags: list[str], status: int, first_line: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "t.json"
    config.write_text(JOIN)
    with ExitStack() as stack:
        addresses = []
        for fake in (_ours(), _ts()):
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
            server.add_generic_rpc_handlers((fake.handler(),))
            addresses.append(f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}")
            server.start()
            stack.callback(server.stop, None)
        argv = [str(config), "--suite", "1", "--alternate", "--rpc-timeout", "10"]
        for address in addresses:
            argv += ["--connect", address]
        assert main(argv + flags) == status
    out = capsys.readouterr().out.splitlines()
    assert out[0] == first_line
    if flags:
        assert not any("known upstream" in line for line in out)
    else:
        assert out[1].startswith("  known upstream failure: s: 2 runs (suite 1, private/public)")
        assert out[-1].endswith("ts-mls-external-senders (ts-mls 1.6.4) 2")


def test_cli_rejects_a_bad_known_failures_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "t.json"
    config.write_text('{"scripts": {}}')
    bad = tmp_path / "known.toml"
    bad.write_text('[[failure]]\nid = "x"\n')
    assert main([str(config), "--connect", "127.0.0.1:1", "--known-failures", str(bad)]) == 2
    assert "'client' must be a non-empty string" in capsys.readouterr().err
