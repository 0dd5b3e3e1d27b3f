"""Settings of the Matrix transport (the ``[matrix]`` table of the client settings).

Pydantic only: importable without matrix-nio, so settings validate on any install.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from mls_core.config import InputLimits
from transports.limits import LimitsField


class MatrixSettings(BaseModel):
    """One Matrix device (a device of the user ``matrix:<user id>``; its MLS client id is
    ``<user id>/<device id>``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: base URL of the homeserver, e.g. ``https://matrix.example.org``
    homeserver: str = Field(min_length=8)
    #: full user id, e.g. ``@alice:example.org``
    user_id: str = Field(pattern=r"^@[^:]+:.+$")
    password: SecretStr | None = None
    access_token: SecretStr | None = None
    #: a PEM file of CA certificates trusted *instead of* the system's CA store, for an
    #: ``https://`` homeserver whose certificate a private (company or self-hosted) CA
    #: signed; the certificate is always verified (chain and host name), there is no
    #: switch to skip it. A certificate that does not verify is a ``LoginError`` naming
    #: this setting
    ca_file: Path | None = None
    #: the device to log in as; without it a password login creates a device once and
    #: the journal remembers it
    device_id: str | None = None
    #: the device's journal (received events, sync token); default
    #: ``<state_dir>/matrix-journal.sqlite``
    journal_path: Path | None = None
    #: how long a waiting ``/sync`` long-polls (milliseconds)
    long_poll_ms: int = Field(default=5_000, ge=0, le=120_000)
    #: timeline events per room and sync (gaps are filled with ``/messages``)
    timeline_limit: int = Field(default=500, ge=1, le=10_000)
    #: largest payload downloaded from the media repository (bytes)
    max_media_bytes: int = Field(default=16 * 1024 * 1024, ge=65_536, le=1 << 30)
    #: seconds ``submit`` waits for its event to come back through ``/sync``
    submit_timeout: float = Field(default=30.0, gt=0, le=600)
    #: the bridge account of bridged groups (docs/bridge.md), its user id (a
    #: ``matrix:`` prefix is dropped): room policy sync never lowers its power level
    bridge: str | None = None
    #: bounds on the GroupInfos read from rooms (docs/security.md "Bounds"); a client
    #: or the bridge sets them from its ``[limits]`` section. A GroupInfo in the media
    #: repository is also bounded by ``max_media_bytes``
    limits: LimitsField = InputLimits()

    @model_validator(mode="after")
    def _credentials(self) -> MatrixSettings:
        if self.password is None and self.access_token is None:
            raise ValueError("either password or access_token is required")
        return self

    @field_validator("homeserver")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not a URL: write it with its scheme, e.g. "
                             f"https://{value.split('://')[-1]} (http:// for a local test "
                             "server)")
        return value

    @field_validator("bridge")
    @classmethod
    def _bridge(cls, value: str | None) -> str | None:
        if value is None:
            return None
        user = value.removeprefix("matrix:")
        if not re.fullmatch(r"@[^:\s]+:[^/\s]+", user):
            raise ValueError(f"bridge {value!r} is not a Matrix user id")
        return user

    @field_validator("journal_path", "ca_file")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()
