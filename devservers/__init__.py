"""Start and stop private real servers (Prosody, Synapse) on 127.0.0.1: for the
integration tests and `mls-bridge demo --real`."""

from __future__ import annotations

import signal
import subprocess


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM a server and wait for it, SIGKILL if it takes longer than ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def kill(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGKILL a server (no shutdown code runs) and reap it."""
    if proc is None or proc.poll() is not None:
        return
    proc.kill()
    proc.wait(timeout=timeout)
