"""``bridge.toml``: the bridge service's settings (validated with pydantic).

Example::

    state_dir = "/var/lib/mls-bridge"        # the hub database and the Matrix journal
    log_file = "/var/log/mls-bridge.log"     # optional; default: stderr
    ordering = "first_valid"                 # or "first_offered" (bridge/hub.py Rule)

    [limits]                                 # optional: larger groups (docs/security.md)
    max_tree_bytes = 16777216                # defaults: mls_core.config.InputLimits
    max_message_bytes = 17825792

    [xmpp]                                   # transports/xmpp/settings.py
    jid = "bridge@example.org/relay"
    password = "..."

    [matrix]                                 # transports/matrix/settings.py
    homeserver = "https://matrix.example.org"
    user_id = "@bridge:example.org"
    password = "..."

    [[pairs]]                                # optional: groups bridged from the start
    xmpp_room = "mls-0a1b...@conference.example.org"
    matrix_room = "!abc:example.org"         # optional: checked, or the bridge opens it
    creator = "xmpp:alice@example.org"       # optional: who may give its first view

Groups are also bridged at run time, when a member's client asks (transports/bridged.py).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bridge.hub import Rule
from mls_client.settings import LimitSettings, with_limits
from transports.base import InvalidRequestError
from transports.matrix.settings import MatrixSettings
from transports.xmpp.settings import XmppSettings

_ROOM = re.compile(r"^mls-([0-9a-f]{2,512})@[^@/\s]+$")


class Pair(BaseModel):
    """One bridged group: its MUC room (named ``mls-<hex group id>``, docs/xmpp.md) and,
    optionally, the Matrix room bound to the same group."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    xmpp_room: str
    matrix_room: str | None = Field(default=None, pattern=r"^![^:]+:.+$")
    #: the member (``xmpp:<bare JID>`` / ``matrix:<user id>``) whose own GroupInfo, sent
    #: with a ``bridge`` request, becomes the bridge's first verified view of the group
    #: (docs/bridge.md, "Who may ask"); without it and without a view, the bridge
    #: answers no request about the group
    creator: str | None = Field(default=None, pattern=r"^(xmpp|matrix):\S+$",
                                max_length=512)

    @field_validator("xmpp_room")
    @classmethod
    def _room(cls, value: str) -> str:
        if _ROOM.match(value) is None:
            raise ValueError("xmpp_room must be a room JID mls-<hex group id>@<MUC service>")
        return value

    @property
    def group_id(self) -> bytes:
        match = _ROOM.match(self.xmpp_room)
        assert match is not None  # validated
        return bytes.fromhex(match.group(1))


class BridgeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    state_dir: Path
    log_file: Path | None = None
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    #: which Commit of an epoch the hub lets through (bridge/hub.py ``Rule``): every
    #: one, members applying the first valid ("first_valid", the default), or only the
    #: first offered ("first_offered": a later one is rejected at the hub)
    ordering: Rule = Rule.FIRST_VALID
    #: bounds on the GroupInfos the bridge checks (members' views, the rooms' published
    #: GroupInfo; docs/security.md "Bounds"), the client's ``[limits]`` section; before
    #: the network tables, which take theirs from it
    limits: LimitSettings = LimitSettings()
    xmpp: XmppSettings
    matrix: MatrixSettings
    pairs: list[Pair] = Field(default_factory=list)

    _bound = field_validator("xmpp", "matrix")(with_limits)

    @property
    def hub_path(self) -> Path:
        return self.state_dir / "hub.sqlite"

    @property
    def journal_path(self) -> Path:
        return self.matrix.journal_path or self.state_dir / "matrix-journal.sqlite"

    @classmethod
    def load(cls, path: Path) -> BridgeConfig:
        """Read and validate ``path``; a bad file raises InvalidRequestError."""
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidRequestError(f"cannot read {path}: {exc}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidRequestError(f"{path}: {where}: {first['msg']}") from None
