"""gRPC server for the MLS WG interop runner: ``python -m interop.client --port N``.

Serves ``mls_client.MLSClient`` (interop/mls_client.proto) with
:class:`interop.service.InteropService`. Every RPC of the proto's service descriptor is
registered; calls are serialised (the runner is sequential and the states are shared).
Errors become gRPC statuses (:func:`interop.errors.status_of`) carrying the error's
message: INVALID_ARGUMENT for bad input, FAILED_PRECONDITION for misuse of a state,
NOT_FOUND for unknown IDs, UNIMPLEMENTED for what we cannot do, INTERNAL (logged) for
bugs. A bad request never stops the server. SIGTERM and SIGINT stop it gracefully.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from types import FrameType
from typing import Any

import grpc

from mls_core.ciphersuite import enable_experimental_pq

from .errors import status_of
from .generated import mls_client_pb2 as pb
from .service import DEFAULT_NAME, InteropService

SERVICE_NAME = "MLSClient"
#: runner messages can carry whole trees of large groups
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
log = logging.getLogger("interop.client")

Behavior = Callable[[Any, grpc.ServicerContext], Any]


def _behavior(name: str, impl: Callable[[Any], Any] | None, lock: threading.Lock,
              ) -> Behavior:
    """The unary-unary behaviour of RPC ``name``: call ``impl`` under ``lock`` and turn
    any exception into a gRPC status."""

    def behave(request: Any, context: grpc.ServicerContext) -> Any:
        if impl is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{name} is not implemented")
        try:
            with lock:
                return impl(request)
        except Exception as error:
            code = status_of(error)
            if code == "INTERNAL":
                log.exception("%s failed", name)
            context.abort(grpc.StatusCode[code], f"{type(error).__name__}: {error}")

    return behave


def rpc_handler(service: InteropService) -> grpc.GenericRpcHandler:
    """A handler for every method of the proto's ``MLSClient`` service."""
    descriptor = pb.DESCRIPTOR.services_by_name[SERVICE_NAME]
    lock = threading.Lock()
    handlers = {}
    for method in descriptor.methods:
        request_cls = getattr(pb, method.input_type.name)
        impl = getattr(service, method.name, None)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _behavior(method.name, impl, lock),
            request_deserializer=request_cls.FromString,
            response_serializer=_serialize)
    return grpc.method_handlers_generic_handler(descriptor.full_name, handlers)


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data


def serve(host: str = "127.0.0.1", port: int = 0, name: str = DEFAULT_NAME,
          workers: int = 4) -> tuple[grpc.Server, int]:
    """Start a server on ``host:port`` (0: any free port); returns it and the bound port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                         options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                  ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
    server.add_generic_rpc_handlers((rpc_handler(InteropService(name)),))
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    return server, bound


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m interop.client",
                                     description="MLS WG interop gRPC client for mls_core")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    parser.add_argument("--port", type=int, default=50051,
                        help="port to listen on (0: any free port)")
    parser.add_argument("--name", default=DEFAULT_NAME, help="name reported by Name()")
    parser.add_argument("--experimental-pq", action="store_true",
                        help="also serve the experimental PQ suites 79-88 (docs/pq.md); "
                        "MLS_EXPERIMENTAL_PQ=1 does the same")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.experimental_pq:
        enable_experimental_pq()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        server, port = serve(args.host, args.port, args.name)
    except RuntimeError as error:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, error)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # the one line a launcher may parse to learn the port (useful with --port 0)
    print(f"listening on {args.host}:{port}", flush=True)
    stop.wait()
    log.info("shutting down")
    server.stop(grace=2).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
