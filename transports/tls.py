"""TLS certificate trust shared by the XMPP and Matrix transports.

Verification is always on: a server's certificate must chain to a trusted CA and name
the host. ``ca_file`` (``[xmpp]`` / ``[matrix]``) replaces the system's CA store with the
CAs of one PEM file, for a server whose certificate comes from a private (company or
self-hosted) CA. A certificate that does not verify is one :class:`LoginError` line
naming the server and the setting.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from transports.base import LoginError


def client_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying client context: the system's CAs, or only those of ``ca_file``."""
    try:
        return ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise _unusable(ca_file, exc) from None


def download_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying context for attachment downloads: the system's CAs *and* those of
    ``ca_file`` (an attachment may sit on another network's server, e.g. through the
    bridge, whose certificate a public CA signed)."""
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise _unusable(ca_file, exc) from None
    return context


def _unusable(ca_file: Path | None, exc: Exception) -> LoginError:
    """The one-line error of a ``ca_file`` that cannot be read as CA certificates."""
    why = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
    return LoginError(f"cannot use ca_file {ca_file} ({why}): it must be a readable PEM "
                      "file of CA certificates")


def certificate_failure(exc: BaseException | None) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind ``exc`` (itself or a cause), if any."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def untrusted_error(server: str, table: str, failure: BaseException,
                    ca_file: Path | None) -> LoginError:
    """The one-line error of a server certificate that did not verify (``failure``:
    the ``ssl.SSLCertVerificationError``, or what wraps it)."""
    why = (getattr(failure, "verify_message", None) or getattr(failure, "reason", None)
           or str(failure))
    if ca_file is None:
        hint = f"if a private CA signed it, set ca_file in [{table}] to that CA's PEM file"
    else:
        hint = (f"no CA of ca_file {ca_file} signed it, or it does not name the server; "
                f"check [{table}] ca_file and the address")
    return LoginError(f"the certificate of {server} does not verify ({why}): {hint}")
