"""Errors of the interop runner.

``RunnerError``
    ``ConfigError``    a config file that cannot be used at all (bad JSON, missing or
                       unknown ``action``): nothing of that file runs.
    ``ClientError``    a client that could not be started, reached or queried.
    ``StepError``      a step of one run failed; the run stops there (RUNNER.md §1.4).
        ``RpcFailure``    the failure is a gRPC status returned by a client.

A ``StepError`` message is the text written to a run's ``error`` field, so it follows the
Go runner's wording (RUNNER.md §1.4) for tooling that greps results.
"""

from __future__ import annotations


class RunnerError(Exception):
    """Base class of every error the interop runner raises."""


class ConfigError(RunnerError):
    """A config file is unusable (RUNNER.md §2)."""


class ClientError(RunnerError):
    """A client process could not be started, connected to or queried (RUNNER.md §1.2)."""


class StepError(RunnerError):
    """One step of a run failed (RUNNER.md §1.4).

    ``unsupported`` names why the run could not be played with this assignment (for
    example no second common cipher suite) rather than a failure of an implementation.
    """

    def __init__(self, message: str, *, unsupported: str | None = None) -> None:
        super().__init__(message)
        self.unsupported = unsupported


class RpcFailure(StepError):
    """A client answered an RPC with a gRPC error status.

    The message is grpc-go's rendering, ``rpc error: code = <Code> desc = <details>``.
    """

    def __init__(self, *, rpc: str, client: str, code: str, details: str) -> None:
        unsupported = None
        if code == "Unimplemented":
            unsupported = f"{client} does not implement {rpc}"
            if details:
                unsupported += f" ({details})"
        super().__init__(f"rpc error: code = {code} desc = {details}", unsupported=unsupported)
        self.rpc = rpc
        self.client = client
        self.code = code
        self.details = details
