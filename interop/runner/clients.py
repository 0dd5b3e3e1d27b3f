"""Clients: gRPC connections to MLS client stacks, and the processes the runner starts.

A :class:`Client` is one connected stack with its ``Name`` and supported suites (RUNNER.md
§1.2). :func:`start_clients` launches the named stacks as subprocesses on free loopback
ports, waits for each to answer, and registers their shutdown on an ``ExitStack`` so they
are stopped even when the run fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.message import Message  # type: ignore[import-untyped, unused-ignore]

from interop.runner.errors import ClientError, RpcFailure
from interop.runner.proto import field_ints, field_str, go_code_name, rpc_table

REPO_ROOT = Path(__file__).resolve().parents[2]

#: How each known stack is launched; ``{port}`` is replaced by the chosen port.
LAUNCHERS: dict[str, Callable[[int], list[str]]] = {
    "ours": lambda port: [sys.executable, "-m", "interop.client", "--port", str(port)],
    "ts-mls": lambda port: ["node", "interop/ts-mls/server.mjs", "--port", str(port)],
}

_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
]
_LOG_TAIL = 2000


@dataclass
class Client:
    """A connected client stack (RUNNER.md §1.2)."""

    label: str
    address: str
    name: str = ""
    kind: str = ""  # the stack: a LAUNCHERS key, or the first word of Name if connected
    suites: frozenset[int] = frozenset()
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _channel: Any = None
    _stubs: dict[str, Any] = field(default_factory=dict)

    def connect(self, timeout: float) -> None:
        """Open the channel, wait until it is ready, then ask Name and suites."""
        self._channel = grpc.insecure_channel(self.address, options=_CHANNEL_OPTIONS)
        self._wait_ready(timeout)
        name = self.call("Name", rpc_table()["Name"].request(), timeout)
        self.name = field_str(name, "name")
        if not self.kind:
            self.kind = self.name.split(maxsplit=1)[0] if self.name.strip() else ""
        suites = self.call(
            "SupportedCiphersuites", rpc_table()["SupportedCiphersuites"].request(), timeout
        )
        self.suites = frozenset(field_ints(suites, "ciphersuites"))

    def call(self, rpc: str, request: Message, timeout: float) -> Message:
        """One unary RPC with its own deadline; a gRPC status becomes :class:`RpcFailure`."""
        stub = self._stubs.get(rpc)
        if stub is None:
            spec = rpc_table()[rpc]
            stub = self._channel.unary_unary(
                spec.path,
                request_serializer=_serialize,
                response_deserializer=spec.response.FromString,
            )
            self._stubs[rpc] = stub
        try:
            response: Message = stub(request, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
            details = exc.details() if hasattr(exc, "details") else str(exc)
            raise RpcFailure(
                rpc=rpc, client=self.label, code=go_code_name(code.name), details=details or ""
            ) from exc
        return response

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def exit_status(self) -> int | None:
        """The process's exit status if it was started by us and has ended."""
        return None if self.process is None else self.process.poll()

    def log_tail(self) -> str:
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text(errors="replace")[-_LOG_TAIL:]
        except OSError:
            return ""

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        future = grpc.channel_ready_future(self._channel)
        while True:
            try:
                future.result(timeout=0.2)
                return
            except grpc.FutureTimeoutError:
                pass
            status = self.exit_status()
            if status is not None:
                raise ClientError(
                    f"client {self.label} exited with status {status} before it was ready"
                    + _tail_text(self.log_tail())
                )
            if time.monotonic() > deadline:
                future.cancel()
                raise ClientError(
                    f"client {self.label} at {self.address} not ready after {timeout:g} s"
                    + _tail_text(self.log_tail())
                )


def free_port() -> int:
    """A currently unused loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unique_labels(kinds: Sequence[str]) -> list[str]:
    """``ours,ours`` becomes ``ours, ours#2`` so that results can tell them apart."""
    counts: dict[str, int] = {}
    labels = []
    for kind in kinds:
        counts[kind] = counts.get(kind, 0) + 1
        labels.append(kind if counts[kind] == 1 else f"{kind}#{counts[kind]}")
    return labels


def start_clients(
    kinds: Sequence[str], stack: ExitStack, *, timeout: float, log_dir: Path | None = None
) -> list[Client]:
    """Start each named stack on a free port and connect to it.

    Every process is registered on ``stack`` before it is waited for, so closing the
    stack stops all of them whatever happened in between.
    """
    unknown = [kind for kind in kinds if kind not in LAUNCHERS]
    if unknown:
        raise ClientError(f"unknown client {unknown[0]!r}; known: {', '.join(LAUNCHERS)}")
    if log_dir is None:
        log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="interop-")))
    clients = []
    for kind, label in zip(kinds, unique_labels(kinds), strict=True):
        client = _spawn(kind, label, log_dir)
        stack.callback(_stop, client)
        clients.append(client)
    for client in clients:
        client.connect(timeout)
    return clients


def connect_clients(addresses: Sequence[str], stack: ExitStack, *, timeout: float) -> list[Client]:
    """Connect to already running clients at ``host:port`` addresses."""
    clients = []
    for address in addresses:
        client = Client(label=address, address=address)
        stack.callback(client.close)
        client.connect(timeout)
        clients.append(client)
    return clients


def _spawn(kind: str, label: str, log_dir: Path) -> Client:
    port = free_port()
    argv = LAUNCHERS[kind](port)
    if kind == "ts-mls" and not (REPO_ROOT / argv[1]).exists():
        raise ClientError(f"client ts-mls: {REPO_ROOT / argv[1]} does not exist")
    log_path = log_dir / f"{label.replace('#', '-')}.log"
    with log_path.open("wb") as log:
        try:
            process = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise ClientError(f"cannot start client {label}: {exc}") from exc
    return Client(
        label=label, address=f"localhost:{port}", kind=kind, process=process,
        log_path=log_path,
    )


def _stop(client: Client) -> None:
    """Close the channel, then stop the client's process group (its own, by id)."""
    client.close()
    process = client.process
    if process is None or process.poll() is not None:
        return
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait(timeout=5)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _tail_text(tail: str) -> str:
    return f"\n--- client log (tail) ---\n{tail}" if tail.strip() else ""



def _serialize(message: Message) -> bytes:
    """The wire form of a request (the generated class's own serializer)."""
    return message.SerializeToString()
