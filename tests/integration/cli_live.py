"""``mls-bridge`` as a user runs it over a real server: each call a subprocess
(``python -m mls_cli``), ``listen`` kept running while another user sends."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.client.test_cli import REPO, run

#: what a library would print on stderr if its loggers were not hidden
LIBRARY_NOISE = ("No appropriate login method", "Error validating response",
                 "Timed out, sleeping", "Invalid certificate trust chain", "Traceback")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLS_BRIDGE_")}
    return {**env, "PYTHONPATH": str(REPO), "HOME": str(home)}


def cli(config: Path, *args: str) -> str:
    """Run one command that must succeed; its stdout."""
    result = run(*args, "--config", config, home=config.parent)
    assert result.returncode == 0, result.stderr
    assert not any(noise in result.stderr for noise in LIBRARY_NOISE), result.stderr
    return result.stdout


def fails_with(config: Path, *args: str) -> str:
    """Run a command that must fail with exit status 1 and exactly one line on stderr
    that is ``mls-bridge: error: ...`` (besides progress notes); that line."""
    result = run("--config", config, *args, home=config.parent)
    assert result.returncode == 1, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("mls-bridge: error: "), result.stderr
    assert not any(noise in result.stderr for noise in LIBRARY_NOISE), result.stderr
    return errors[0]


def chat(config: Path, group: str, stdin: str) -> subprocess.CompletedProcess[str]:
    """``mls-bridge chat GROUP`` with ``stdin`` piped in."""
    return subprocess.run([sys.executable, "-m", "mls_cli", "chat", group, "--config",
                           str(config)], input=stdin, capture_output=True, text=True,
                          cwd=REPO, env=_env(config.parent), timeout=120, check=False)


class Listener:
    """``mls-bridge --config CONFIG listen --json`` in the background; :meth:`next`
    returns its JSON lines as they arrive; leaving the block sends SIGINT (Ctrl-C)."""

    def __init__(self, config: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mls_cli", "--config", str(config), "listen", "--json",
             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env=_env(config.parent))
        self._lines: queue.Queue[str] = queue.Queue()
        self.stderr = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def next(self, match: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[
            str, Any]:
        """The first JSON record ``match`` accepts (earlier ones are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                raise AssertionError(f"listen printed nothing matching in {timeout} s; "
                                     f"stderr: {self.stop()}") from None
            record = json.loads(line)
            assert {"time", "kind", "group", "sender", "text", "epoch"} <= record.keys()
            if match(record):
                return record

    def stop(self) -> str:
        """Ctrl-C; the process's stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        _, self.stderr = self.proc.communicate(timeout=60)
        return self.stderr

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def conversation(alice: Path, bob: Path, alice_user: str, bob_user: str) -> None:
    """The first chat: alice creates ``team`` and invites bob; bob's ``listen --json``
    shows the join, then alice's message within a few seconds of her send; bob answers
    with ``send team`` (the name is shared inside the group) and with a piped ``chat``;
    each exit is clean."""
    cli(alice, "identity", "create")
    cli(bob, "identity", "create")
    gid = cli(alice, "group", "create", "--name", "team").strip()
    assert "added" in cli(alice, "invite", "team", bob_user)
    with Listener(bob) as listener:
        joined = listener.next(lambda r: r["kind"] == "joined")
        assert joined["group_id"] == gid and joined["epoch"] == 1
        sent = time.monotonic()
        cli(alice, "send", "team", "hello bob")
        message = listener.next(lambda r: r["kind"] == "message")
        assert time.monotonic() - sent < 15
        assert message["text"] == "hello bob" and message["group_id"] == gid
        assert message["sender"] == alice_user and message["epoch"] == 1
        assert message["group"] == "team"  # the name travels inside the group
    assert listener.proc.returncode == 0, listener.stderr
    assert not any(noise in listener.stderr for noise in LIBRARY_NOISE), listener.stderr

    cli(bob, "send", "team", "hi alice")  # bob uses the shared name
    alice_said = cli(alice, "read")
    assert "hi alice" in alice_said
    cli(alice, "send", "team", "before your chat")
    chatted = chat(bob, "team", "first line\n\nsecond line\n")
    assert chatted.returncode == 0, chatted.stderr
    assert "before your chat" in chatted.stdout
    read = cli(alice, "read")
    assert "first line" in read and "second line" in read


def listen_through_a_restart(alice: Path, bob: Path, bob_user: str,
                             stop: Callable[[], None], start: Callable[[], None]) -> None:
    """Alice creates a group and invites Bob (``bob_user``), whose ``listen`` runs
    while the server is stopped for 3 s and started again (``stop``, ``start``): the
    message Alice sends after the restart is printed, ``listen`` is still running, and
    Ctrl-C then ends it cleanly."""
    cli(alice, "identity", "create")
    cli(bob, "identity", "create")
    gid = cli(alice, "group", "create", "--name", "team").strip()
    cli(alice, "invite", "team", bob_user)
    with Listener(bob) as listener:
        listener.next(lambda r: r["kind"] == "joined")
        stop()
        time.sleep(3)
        start()
        cli(alice, "send", "team", "after the restart")
        message = listener.next(lambda r: r["kind"] == "message", timeout=90)
        assert message["text"] == "after the restart" and message["group_id"] == gid
        assert listener.proc.poll() is None, listener.stderr
    assert listener.proc.returncode == 0, listener.stderr
