"""Errors of the interop service that are not MLS errors: unknown IDs, malformed
requests and unsupported operations. Each carries the gRPC status code name it maps to;
``mls_core`` errors are mapped by :func:`status_of`."""

from __future__ import annotations

from mls_core.errors import MLSError, PolicyError, UnsupportedError, UsageError


class InteropError(Exception):
    """Base class; ``code`` is a ``grpc.StatusCode`` member name."""

    code = "INVALID_ARGUMENT"


class InvalidArgument(InteropError):
    """The request is malformed (unknown proposal type, wrong message kind, ...)."""

    code = "INVALID_ARGUMENT"


class NotFound(InteropError):
    """No state, transaction, reinit or signer with this ID."""

    code = "NOT_FOUND"


class FailedPrecondition(InteropError):
    """The request is well-formed but the named state cannot serve it."""

    code = "FAILED_PRECONDITION"


class Unimplemented(InteropError):
    """Something this client cannot do."""

    code = "UNIMPLEMENTED"


def status_of(error: Exception) -> str:
    """The gRPC status code name for an error raised while serving an RPC."""
    if isinstance(error, InteropError):
        return error.code
    if isinstance(error, UsageError | PolicyError):
        return "FAILED_PRECONDITION"
    if isinstance(error, UnsupportedError):
        return "UNIMPLEMENTED"
    if isinstance(error, MLSError):
        return "INVALID_ARGUMENT"
    return "INTERNAL"
