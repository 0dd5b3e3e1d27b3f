"""Settings of the XMPP transport (the ``[xmpp]`` table of the client settings).

Pydantic only: importable without slixmpp, so settings validate on any install.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from mls_core.config import InputLimits
from transports.limits import LimitsField


class XmppSettings(BaseModel):
    """One XMPP account (a device of the user ``xmpp:<bare JID>``).

    The device is the JID's resource: its client id is the full JID
    ``user@domain/resource`` and its MLS credential identity ``xmpp:user@domain``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: full or bare JID of this device's account; the resource names the device
    jid: str = Field(min_length=3)
    password: SecretStr
    #: where to connect (default: the JID's domain on the standard port)
    host: str | None = None
    port: int = Field(default=5222, ge=1, le=65535)
    #: the MUC service rooms are created on, e.g. ``conference.example.org``
    #: (default ``conference.<domain>``)
    muc_service: str | None = None
    #: the device name when ``jid`` has no resource (``mls_client`` then uses its
    #: state directory's own device unless this is set: one full JID, one session)
    device: str = Field(default="mls", min_length=1, max_length=64,
                        pattern=r"^[0-9A-Za-z_.-]+$")
    #: allow SCRAM/PLAIN without TLS (only for a server on loopback, as in tests)
    allow_plaintext: bool = False
    #: a PEM file of CA certificates trusted *instead of* the system's CA store, for a
    #: server whose certificate a private (company or self-hosted) CA signed; the
    #: certificate is always verified (chain and host name), there is no switch to skip
    #: it. A certificate that does not verify is a ``LoginError`` naming this setting
    ca_file: Path | None = None
    #: raw bytes per ``<mls/>`` chunk; must keep a stanza below the server's limit
    #: (Prosody: ``c2s_stanza_size_limit``, 256 KiB by default; base64 adds a third)
    chunk_size: int = Field(default=96 * 1024, ge=1024, le=8 * 1024 * 1024)
    #: the largest MLS message sent or reassembled
    max_payload: int = Field(default=16 * 1024 * 1024, ge=1024)
    #: seconds to wait for a room's reflection of a message we sent
    submit_timeout: float = Field(default=30.0, gt=0)
    #: seconds to wait to connect and authenticate
    connect_timeout: float = Field(default=20.0, gt=0)
    #: bare JID of the bridge account of bridged groups (docs/bridge.md): it keeps the
    #: ``admin`` affiliation whatever the room policy says
    bridge: str | None = Field(default=None, min_length=3, max_length=1024)
    #: KeyPackage claim notices (docs/xmpp.md "KeyPackages"): anyone may claim one of
    #: our one-use KeyPackages, so a notice is acted on only within two token buckets,
    #: one per claimant account and one for the whole device. A legitimate adder claims
    #: one KeyPackage per device per Add: 3 at once and 6 per hour per account cover
    #: adding us to a few groups in a row. The device-wide bucket (10 at once, 30 per
    #: hour) stays below the default pool of 20 (KeyPackageSettings.pool_size), so
    #: strangers with many accounts cannot empty it faster than the client refills it.
    #: A notice over a limit is dropped: the item stays published and may be handed out
    #: again, which non-atomic claims allow anyway (reuse grace, then a self-update);
    #: the Welcome that uses it retracts it. Our own account's devices are not limited.
    claim_burst: int = Field(default=3, ge=1, le=1000)
    claims_per_hour: float = Field(default=6.0, ge=0, le=100_000)
    claim_global_burst: int = Field(default=10, ge=1, le=1000)
    claims_global_per_hour: float = Field(default=30.0, ge=0, le=100_000)
    #: bounds on the GroupInfos read from rooms (docs/security.md "Bounds"); a client
    #: or the bridge sets them from its ``[limits]`` section. A GroupInfo is also
    #: bounded by ``max_payload``: raise it with ``limits.max_message_bytes``
    limits: LimitsField = InputLimits()

    @model_validator(mode="after")
    def _jid_shape(self) -> XmppSettings:
        local, at, rest = self.jid.partition("@")
        if not local or not at or not rest or rest.startswith("/"):
            raise ValueError("jid must look like user@domain or user@domain/resource")
        if self.bridge is not None:
            b_local, b_at, b_rest = self.bridge.partition("@")
            if not b_local or not b_at or not b_rest or "/" in b_rest:
                raise ValueError("bridge must be a bare JID like bridge@domain")
        return self

    @field_validator("ca_file")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()

    @property
    def bare_jid(self) -> str:
        return self.jid.split("/", 1)[0]

    @property
    def full_jid(self) -> str:
        return self.jid if "/" in self.jid else f"{self.jid}/{self.device}"

    @property
    def user_id(self) -> str:
        """The credential identity of this account's user."""
        return f"xmpp:{self.bare_jid}"
