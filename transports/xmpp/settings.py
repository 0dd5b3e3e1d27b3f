"""Settings of the XMPP transport (the ``[xmpp]`` table of the client settings).

Pydantic only: importable without slixmpp, so settings validate on any install.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class XmppSettings(BaseModel):
    """One XMPP account (a device of the user ``xmpp:<bare JID>``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: full or bare JID of this device's account; the resource names the device
    jid: str = Field(min_length=3)
    password: SecretStr
    #: where to connect (default: the JID's domain on the standard port)
    host: str | None = None
    port: int = Field(default=5222, ge=1, le=65535)
    #: the MUC service rooms are created on, e.g. ``conference.example.org``
    muc_service: str | None = None
