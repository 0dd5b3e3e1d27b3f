"""The ``mls-bridge`` command, run in subprocesses (``python -m mls_cli``: the installed
script may belong to another checkout)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mls_cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]


def _command() -> list[str]:
    return [sys.executable, "-m", "mls_cli"]


def run(*args: str | Path, env: dict[str, str] | None = None,
        home: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLS_BRIDGE_")}
    base["PYTHONPATH"] = str(REPO)
    if home is not None:
        base["HOME"] = str(home)
    return subprocess.run([*_command(), *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, env={**base, **(env or {})}, timeout=120, check=False)


class User:
    """One CLI user: a state directory on a shared delivery database."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.args: list[str | Path] = ["--state-dir", root / name, "--ds", root / "ds.sqlite"]
        self.home = root

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = run(*self.args, *args, home=self.home,
                     env={"MLS_BRIDGE_KEY_PACKAGES__POOL_SIZE": "5",
                          "MLS_BRIDGE_KEY_PACKAGES__THRESHOLD": "2"})
        if ok:
            assert result.returncode == 0, result.stderr
            assert "Traceback" not in result.stderr
        return result


def test_demo_exits_zero_and_tells_the_story() -> None:
    result = run("demo")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "alice adds bob, carol and dave" in out
    assert "epoch 1; members: alice, bob, carol, dave" in out
    assert "dave (removed) tries with his last state: EpochError" in out
    assert "Commits that lost their epoch and were rebuilt: 1" in out
    assert "rejoined at epoch" in out
    assert "DIFFERENT" not in out
    assert out.rstrip().endswith("demo finished: every check held")


def test_scripted_conversation(tmp_path: Path) -> None:
    alice, bob, carol = (User(tmp_path, n) for n in ("alice", "bob", "carol"))
    created = alice("identity", "create", "alice", "--client-id", "alice-laptop")
    assert created.stdout.strip() == "alice alice-laptop"
    assert "generating KeyPackages: 5/5" in created.stderr
    bob("identity", "create", "bob")
    carol("identity", "create", "carol")
    assert alice("identity", "show").stdout.strip() == "alice alice-laptop"

    gid = alice("group", "create", "--name", "team").stdout.strip()
    assert len(gid) == 64 and int(gid, 16) >= 0
    invited = alice("invite", "team", "bob", "carol")
    assert invited.stdout.startswith("epoch 1: added ")
    assert invited.stdout.rstrip().endswith("; Welcome sent")

    joined = bob("read")
    assert f"joined group {gid[:16]} at epoch 1" in joined.stderr
    sent = alice("send", "team", "hello team").stdout
    mid = re.fullmatch(r"sent to team \(\w{16}\) \(epoch 1\): message (\w{8})\n", sent)
    assert mid, sent
    assert bob("read").stdout.strip() == f"[team] epoch 1 alice: [{mid[1]}] hello team"
    assert bob("read").stdout == ""  # already read

    groups = bob("groups").stdout.split()
    assert groups[0] == gid and "epoch" in groups and "alice," in groups
    members = carol("members", gid[:10]).stdout.splitlines()
    assert members == ["0  alice", "1  bob", "2  carol"]

    removed = alice("remove", "team", "carol")
    assert removed.stdout.strip() == "epoch 2: removed 1 member(s)"
    assert "removed from group" in carol("read").stderr
    alice("send", "team", "carol cannot read this")
    assert "carol cannot read this" not in carol("read").stdout
    assert "carol cannot read this" in bob("read").stdout
    assert carol("groups").stdout == ""
    assert gid in carol("groups", "--all").stdout

    piped = run(*alice.args, "send", "team", "-", home=tmp_path)
    assert piped.returncode == 0, piped.stderr
    published = alice("keypackages", "publish", "--count", "2")
    assert published.stdout.startswith("published 2;")


@pytest.mark.parametrize(("args", "message"), [
    (["send", "nosuchgroup", "hi"], "no group named 'nosuchgroup'"),
    (["identity", "create", "alice"], "already holds the identity alice"),
    (["invite", "team", "nobody"], "nobody has no MLS identity to add (no KeyPackage "
     "published): check the address, and ask them to run 'mls-bridge identity create'"),
    (["invite", "team", "alice"], "alice is already a member of team"),
    (["recover", "00ff"], "no GroupInfo published"),
])
def test_errors_are_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    alice = User(tmp_path, "alice")
    alice("identity", "create", "alice")
    alice("group", "create", "--name", "team")
    result = alice(*args, ok=False)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("mls-bridge:")]
    assert len(lines) == 1 and lines[0].startswith("mls-bridge: error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_usage_and_settings_errors(tmp_path: Path) -> None:
    fresh = User(tmp_path, "fresh")
    result = fresh("group", "create", ok=False)
    assert result.returncode == 1 and "no identity yet" in result.stderr
    bad = run("--state-dir", tmp_path / "x", "groups", home=tmp_path,
              env={"MLS_BRIDGE_KEY_PACKAGES__POOL_SIZE": "0"})
    assert bad.returncode == 1
    assert bad.stderr.startswith("mls-bridge: error: invalid settings: key_packages.pool_size")
    assert "MLS_BRIDGE_KEY_PACKAGES__POOL_SIZE" in bad.stderr
    assert run("frobnicate").returncode == 2
    usage = run("recover")
    assert usage.returncode == 2 and "the following arguments are required" in usage.stderr
    assert "Traceback" not in bad.stderr + usage.stderr


def test_room_policy_from_the_command_line(tmp_path: Path) -> None:
    alice, bob, carol = (User(tmp_path, n) for n in ("alice", "bob", "carol"))
    for user in (alice, bob, carol):
        user("identity", "create", user.name)
    alice("group", "create", "--name", "team", "--policy")
    alice("invite", "team", "bob")
    bob("read")
    refused = bob("invite", alice("groups").stdout.split()[0], "carol", ok=False)
    assert refused.returncode != 0
    assert "bob (member) may not add (needs moderator)" in refused.stderr
    assert "Traceback" not in refused.stderr
    bad = alice("group", "policy", "team", "--role", "bob=boss", ok=False)
    assert "ROLE is one of banned, member, moderator, admin" in bad.stderr
    shown = alice("group", "policy", "team", "--role", "bob=moderator").stdout
    assert "alice: admin" in shown and "bob: moderator" in shown and "add: moderator" in shown
    gid = bob("groups").stdout.split()[0]
    bob("read")
    assert bob("invite", gid, "carol").stdout.startswith("epoch 3: added ")
    assert "bob: moderator" in carol("group", "policy", gid).stdout


def test_common_options_go_before_or_after_the_command() -> None:
    parser = build_parser()
    for argv in (["--config", "a.toml", "-v", "send", "team", "hi"],
                 ["send", "team", "hi", "--config", "a.toml", "-v"],
                 ["send", "--config", "a.toml", "team", "-v", "hi"]):
        args = parser.parse_args(argv)
        assert (args.config, args.verbose, args.text) == (Path("a.toml"), 1, "hi")
    nested = parser.parse_args(["group", "create", "--name", "t", "--state-dir", "s"])
    assert nested.state_dir == Path("s") and nested.config is None
    for argv in (["bridge", "--config", "b.toml"], ["--config", "b.toml", "bridge"]):
        assert parser.parse_args(argv).config == Path("b.toml")
    usage = run("bridge")
    assert usage.returncode == 2 and "bridge needs --config" in usage.stderr


def test_listen_and_chat_on_the_embedded_service(tmp_path: Path) -> None:
    """listen --json prints each event as it arrives and exits 0 on Ctrl-C; chat sends
    piped lines and shows what arrived (the real-server runs: tests/integration)."""
    alice, bob = User(tmp_path, "alice"), User(tmp_path, "bob")
    alice("identity", "create", "alice")
    bob("identity", "create", "bob")
    gid = alice("group", "create", "--name", "team").stdout.strip()
    alice("invite", "team", "bob")
    listen = _listen(bob)
    try:
        assert listen.stdout is not None
        joined = json.loads(listen.stdout.readline())
        assert (joined["kind"], joined["group_id"], joined["epoch"]) == ("joined", gid, 1)
        alice("send", "team", "hello bob")
        message = json.loads(listen.stdout.readline())
        assert (message["kind"], message["sender"], message["text"], message["group"]) \
            == ("message", "alice", "hello bob", "team")
        assert len(message["message_id"]) == 64
    finally:
        listen.send_signal(signal.SIGINT)
        _, err = listen.communicate(timeout=60)
    assert listen.returncode == 0 and "Traceback" not in err

    alice("send", "team", "before the chat")
    chat = subprocess.run([*_command(), *map(str, bob.args), "chat", gid[:8]],
                          input="one\n\ntwo\n", capture_output=True, text=True, cwd=REPO,
                          env=_env(), timeout=120, check=False)
    assert chat.returncode == 0, chat.stderr
    assert re.search(r"^\d\d:\d\d:\d\d \[team\] alice: \[\w{8}\] before the chat$", chat.stdout,
                     re.M)
    read = alice("read").stdout.splitlines()
    assert [re.sub(r"\[\w{8}\] ", "", line) for line in read] \
        == ["[team] epoch 1 bob: one", "[team] epoch 1 bob: two"]


def test_chat_on_a_terminal_keeps_the_line_being_typed(tmp_path: Path) -> None:
    """On a terminal (a pty here), a message arriving while a line is half typed is
    printed above the prompt, the typed text is redrawn after it, Enter sends the whole
    line and Ctrl-D leaves with status 0."""
    alice, bob = User(tmp_path, "alice"), User(tmp_path, "bob")
    alice("identity", "create", "alice")
    bob("identity", "create", "bob")
    gid = alice("group", "create", "--name", "team").stdout.strip()
    alice("invite", "team", "bob")
    bob("read")
    master, slave = pty.openpty()
    chat = subprocess.Popen([*_command(), *map(str, bob.args), "chat", gid[:8]],
                            stdin=slave, stdout=slave, stderr=slave, cwd=REPO,
                            env={**_env(), "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1",
                                 "MLS_BRIDGE_POLL_INTERVAL": "0.1"})
    os.close(slave)
    screen = ""

    def until(done: Callable[[str], bool], timeout: float = 60) -> None:
        """Read the terminal until ``done(screen)`` (escape sequences stripped)."""
        nonlocal screen
        deadline = time.monotonic() + timeout
        while not done(screen):
            assert time.monotonic() < deadline, f"not yet: {screen!r}"
            if select.select([master], [], [], 0.2)[0]:
                raw = os.read(master, 4096).decode(errors="replace")
                screen += re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)

    prompt = "team>"  # the shared name
    try:
        until(lambda s: prompt in s)
        os.write(master, b"half")
        until(lambda s: "half" in s)
        alice("send", "team", "incoming")
        # the message, then the prompt with the half-typed text redrawn below it
        until(lambda s: re.search(rf"alice: \[\w{{8}}\] incoming.*{prompt}\s*half", s, re.S)
              is not None)
        os.write(master, b" typed\r")
        until(lambda s: re.search(rf"half typed.*{prompt}", s, re.S) is not None)
        os.write(master, b"\x04")
        assert chat.wait(timeout=60) == 0
    finally:
        if chat.poll() is None:
            chat.kill()
        os.close(master)
    assert "Traceback" not in screen
    assert re.fullmatch(r"\[team\] epoch 1 bob: \[\w{8}\] half typed\n", alice("read").stdout)


def test_rich_messages_from_the_command_line(tmp_path: Path) -> None:
    """send --reply-to/--markdown, react, unreact, edit and delete by message id (or a
    prefix); read shows ids, replies and edits; listen --json names each as its kind;
    only the original sender may edit (issue 18; docs/content.md)."""
    alice, bob = User(tmp_path, "alice"), User(tmp_path, "bob")
    alice("identity", "create", "alice")
    bob("identity", "create", "bob")
    alice("group", "create", "--name", "team")
    alice("invite", "team", "bob")
    first = _sent_id(alice("send", "team", "lunch at noon?"))
    bob("read")
    reply = _sent_id(bob("send", "team", "**yes**", "--markdown", "--reply-to", first))
    read = alice("read").stdout.strip()
    assert read == f"[team] epoch 1 bob: [{reply}] **yes** (reply to {first})"
    listen = _listen(bob)
    try:
        assert listen.stdout is not None
        reaction = _sent_id(alice("react", "team", reply[:6], "👍"))
        alice("unreact", "team", reaction)
        alice("edit", "team", first, "lunch at one?")
        refused = alice("edit", "team", reply, "not mine", ok=False)
        assert refused.returncode == 1 and "original sender" in refused.stderr
        alice("delete", "team", first)
        kinds = [json.loads(listen.stdout.readline()) for _ in range(4)]
    finally:
        listen.send_signal(signal.SIGINT)
        _, err = listen.communicate(timeout=60)
    assert listen.returncode == 0 and "Traceback" not in err
    assert [k["kind"] for k in kinds] == ["reaction", "unreaction", "edit", "delete"]
    assert kinds[0]["ref"].startswith(reply) and "👍" in kinds[0]["text"]
    assert kinds[2]["ref"].startswith(first) and "lunch at one?" in kinds[2]["text"]
    assert kinds[3]["ref"].startswith(first)
    shown = bob("read", "--all").stdout
    assert "lunch at noon?" not in shown and "lunch at one?" not in shown  # deleted
    assert f"[{reply}] **yes**" in shown
    missing = bob("react", "team", "ffff", "x", ok=False)
    assert missing.returncode == 1 and "no message ffff" in missing.stderr


def _listen(user: User) -> subprocess.Popen[str]:
    """``listen --json`` of ``user`` in the background, polling the embedded service
    every 0.1 s."""
    return subprocess.Popen([*_command(), *map(str, user.args), "listen", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env={**_env(), "MLS_BRIDGE_POLL_INTERVAL": "0.1"})


def _env() -> dict[str, str]:
    """This environment without our settings variables, importing the repository."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLS_BRIDGE_")}
    return {**env, "PYTHONPATH": str(REPO)}


def _sent_id(done: subprocess.CompletedProcess[str]) -> str:
    found = re.search(r": message (\w{8})$", done.stdout.strip())
    assert found, done.stdout
    return found[1]
