"""Client settings: a pydantic model read from a TOML file and ``MLS_BRIDGE_*`` variables.

Precedence, lowest first: defaults, the TOML file, the environment. Nested fields are
TOML tables (``[key_packages] pool_size = 30``) or ``__``-separated variable names
(``MLS_BRIDGE_KEY_PACKAGES__POOL_SIZE=30``). ``MLS_BRIDGE_CONFIG`` names the TOML file
when no path is passed. Every validation problem is reported on its own line with the
file or variable it came from (:class:`~mls_client.errors.ConfigError`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mls_core.ciphersuite import (
    EXPERIMENTAL_PQ_SUITES,
    SUPPORTED_SUITES,
    enable_experimental_pq,
)
from mls_core.config import GroupConfig, InputLimits
from mls_core.framing import WireFormat
from mls_core.room_policy import RoomPolicyEnforcer
from transports.matrix.settings import MatrixSettings
from transports.xmpp.settings import XmppSettings

from .errors import ConfigError

ENV_PREFIX = "MLS_BRIDGE_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
DEFAULT_STATE_DIR = Path("~/.local/state/mls-bridge")
DAY = 24 * 3600


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TransportSettings(_Section):
    """Which Delivery Service to use (RFC 9750 "Delivery Service")."""

    #: ``local``: the embedded LocalDeliveryService; ``xmpp`` / ``matrix``: the network
    #: adapters, configured by the ``[xmpp]`` / ``[matrix]`` tables
    kind: Literal["local", "xmpp", "matrix"] = "local"
    #: the LocalDeliveryService database; default ``<state_dir>/delivery.sqlite``
    db_path: Path | None = None

    @field_validator("db_path")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()


class KeyPackageSettings(_Section):
    """The KeyPackage pool (RFC 9750 "KeyPackage reuse and last resort")."""

    #: one-use KeyPackages kept published
    pool_size: int = Field(default=20, ge=1, le=1000)
    #: publish more when fewer than this many remain on the Delivery Service
    threshold: int = Field(default=5, ge=0, le=1000)
    lifetime_days: int = Field(default=90, ge=1, le=5 * 365)
    #: the last-resort KeyPackage is replaced after this long (or once used)
    last_resort_rotation_days: int = Field(default=30, ge=1, le=5 * 365)
    #: keep a used one-use KeyPackage's private keys this long, so a second Welcome to
    #: it can still be joined (the group then self-updates at once). None: 0 where the
    #: transport claims atomically, 3600 where it cannot (``atomic_claims = False``,
    #: e.g. XMPP PEP, where two adders may fetch the same item before it is retracted)
    reuse_grace_seconds: int | None = Field(default=None, ge=0, le=30 * DAY)
    #: one-use KeyPackages published per hour, at most, in refills that claims trigger
    #: (the periodic upkeep is not limited): a stranger draining the directory cannot
    #: make us generate and upload without bound (docs/security.md)
    max_refill_per_hour: int = Field(default=200, ge=0, le=100_000)

    @model_validator(mode="after")
    def _consistent(self) -> KeyPackageSettings:
        if self.threshold > self.pool_size:
            raise ValueError("threshold must not exceed pool_size")
        if self.last_resort_rotation_days >= self.lifetime_days:
            raise ValueError("last_resort_rotation_days must be below lifetime_days")
        return self


class WindowSettings(_Section):
    """Out-of-order and past-epoch windows (RFC 9420 §9.2, §14, §15.3)."""

    max_past_epochs: int = Field(default=2, ge=0, le=1000)
    #: read a past epoch's message even from a member removed since (default: refuse,
    #: RemovedSenderError; docs/security.md "Removed members")
    accept_removed_senders: bool = False
    max_retained_keys: int = Field(default=128, ge=0, le=100_000)
    max_forward_distance: int = Field(default=1024, ge=1, le=1_000_000)


class TrustSettings(_Section):
    """Trust on first use of members' signature keys (docs/security.md)."""

    #: a claimed KeyPackage whose identity we know under other keys only: add it with a
    #: SignatureKeyChanged warning, or refuse it (a new device must then be confirmed
    #: out of band). Incoming Commits are never refused for this: they only warn.
    new_signature_key: Literal["warn", "reject"] = "warn"


class AttachmentSettings(_Section):
    """Encrypted attachments (docs/content.md "Attachments")."""

    #: the largest attachment sent or downloaded (bytes)
    max_size: int = Field(default=100 * 1024 * 1024, ge=1, le=1 << 40)
    #: seconds a download may take
    download_timeout: float = Field(default=300.0, gt=0, le=86400)


_LIMITS = InputLimits()
#: InputLimits takes any positive int; these caps only catch typos (2^31 leaves is the
#: most whose node indices fit a uint32, RFC 9420 Appendix C)
_MAX_LEAVES = 1 << 31
_MAX_BYTES = 1 << 34


class LimitSettings(_Section):
    """Bounds on what a joiner decodes before it decodes it: a Welcome (RFC 9420
    §12.4.3.1), a GroupInfo (§12.4.3.2) and a ratchet tree (§12.4.3.3); the fields and
    defaults of :class:`~mls_core.config.InputLimits` (docs/security.md "Bounds"). They
    bound the client's joins and the GroupInfos its transport reads from rooms."""

    max_tree_leaves: int = Field(default=_LIMITS.max_tree_leaves, ge=1, le=_MAX_LEAVES)
    #: unset: 4 MiB times the group's suite's leaf scale (1 for suites 1 and 3, 45 for
    #: ML-DSA-87); a number is used as it is, whatever the suite
    max_tree_bytes: int | None = Field(default=None, ge=1, le=_MAX_BYTES)
    #: a Welcome or GroupInfo carries its tree: at least ``max_tree_bytes``; unset: the
    #: tree's bound plus 1 MiB
    max_message_bytes: int | None = Field(default=None, ge=1, le=_MAX_BYTES)

    @model_validator(mode="after")
    def _holds_the_tree(self) -> LimitSettings:
        if (self.max_message_bytes is not None and self.max_tree_bytes is not None
                and self.max_message_bytes < self.max_tree_bytes):
            raise ValueError("max_message_bytes must be at least max_tree_bytes: a Welcome "
                             "or GroupInfo carries the tree")
        return self

    def input_limits(self) -> InputLimits:
        """These bounds as :class:`~mls_core.config.InputLimits`."""
        return InputLimits(max_tree_leaves=self.max_tree_leaves,
                           max_tree_bytes=self.max_tree_bytes,
                           max_message_bytes=self.max_message_bytes)


_Network = TypeVar("_Network", XmppSettings, MatrixSettings)


def with_limits(network: _Network | None, info: ValidationInfo) -> _Network | None:
    """``network`` (an ``[xmpp]``/``[matrix]`` table) bounded by the ``limits`` section
    validated before it (``info.data``), so that one section governs joins and the
    transport alike. A table that sets other ``limits`` of its own is refused."""
    section = info.data.get("limits")
    if network is None or not isinstance(section, LimitSettings):
        return network  # no table, or [limits] is invalid and reported as such
    limits = section.input_limits()
    if "limits" in network.model_fields_set and network.limits != limits:
        raise ValueError("set the bounds in the [limits] section, not in this table")
    return network.model_copy(update={"limits": limits})


class Settings(_Section):
    """Everything an :class:`~mls_client.client.MLSClient` needs besides its identity."""

    state_dir: Path = DEFAULT_STATE_DIR
    cipher_suite: int = 1
    #: opt in to the experimental post-quantum suites 79-88 (unregistered code points,
    #: ts-mls profile; docs/pq.md): needed for ``cipher_suite`` = one of them, and makes
    #: KeyPackages advertise them
    experimental_pq: bool = False
    handshake_wire_format: Literal["private", "public"] = "private"
    padding_block: int = Field(default=32, ge=0, le=4096)
    #: how often a Commit that lost its epoch is rebuilt and resubmitted
    commit_retries: int = Field(default=5, ge=0, le=100)
    #: seconds a send or Commit keeps retrying (capped backoff) while the transport
    #: fails transiently (network down, server restarting) before it raises
    #: :class:`~mls_client.errors.DeliveryPendingError` (docs/resilience.md)
    submit_wait: float = Field(default=120.0, ge=0, le=86400)
    #: seconds the event loop waits for new items before housekeeping
    poll_interval: float = Field(default=1.0, gt=0, le=3600)
    transport: TransportSettings = TransportSettings()
    key_packages: KeyPackageSettings = KeyPackageSettings()
    windows: WindowSettings = WindowSettings()
    trust: TrustSettings = TrustSettings()
    attachments: AttachmentSettings = AttachmentSettings()
    #: before the transport tables, which take their ``limits`` from it
    limits: LimitSettings = LimitSettings()
    xmpp: XmppSettings | None = None
    matrix: MatrixSettings | None = None

    _bound = field_validator("xmpp", "matrix")(with_limits)

    @model_validator(mode="after")
    def _transport_configured(self) -> Settings:
        kind = self.transport.kind
        if kind != "local" and getattr(self, kind) is None:
            raise ValueError(f"transport.kind is {kind!r} but there is no [{kind}] table")
        return self

    @field_validator("state_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("cipher_suite")
    @classmethod
    def _known_suite(cls, value: int) -> int:
        if value not in SUPPORTED_SUITES and value not in EXPERIMENTAL_PQ_SUITES:
            raise ValueError(f"unsupported cipher suite {value} (supported: "
                             f"{', '.join(map(str, SUPPORTED_SUITES))}; experimental "
                             "with experimental_pq = true: 79-88)")
        return value

    @model_validator(mode="after")
    def _experimental_opt_in(self) -> Settings:
        if self.cipher_suite in EXPERIMENTAL_PQ_SUITES and not self.experimental_pq:
            raise ValueError(f"cipher suite {self.cipher_suite} is an experimental PQ suite: "
                             "set experimental_pq = true (docs/pq.md)")
        if self.experimental_pq:  # process-wide, as mls_core's registry is
            enable_experimental_pq()
        return self

    @property
    def ca_file(self) -> Path | None:
        """The ``ca_file`` of the network table in use (attachment downloads trust it
        besides the system's CAs)."""
        table = {"xmpp": self.xmpp, "matrix": self.matrix}.get(self.transport.kind)
        return None if table is None else table.ca_file

    @property
    def client_db_path(self) -> Path:
        return self.state_dir / "client.sqlite"

    @property
    def delivery_db_path(self) -> Path:
        return self.transport.db_path or self.state_dir / "delivery.sqlite"

    def group_config(self) -> GroupConfig:
        """The :class:`GroupConfig` of every group this client is in."""
        wire = (WireFormat.MLS_PRIVATE_MESSAGE if self.handshake_wire_format == "private"
                else WireFormat.MLS_PUBLIC_MESSAGE)
        w = self.windows
        return GroupConfig(handshake_wire_format=wire, padding_block=self.padding_block,
                           max_past_epochs=w.max_past_epochs,
                           accept_removed_senders=w.accept_removed_senders,
                           max_retained_keys=w.max_retained_keys,
                           max_forward_distance=w.max_forward_distance,
                           commit_policy=RoomPolicyEnforcer(),
                           limits=self.limits.input_limits())

    @classmethod
    def load(cls, path: Path | None = None, *, env: Mapping[str, str] | None = None,
             overrides: Mapping[str, Any] | None = None) -> Settings:
        """Defaults < TOML file (``path`` or ``$MLS_BRIDGE_CONFIG``) < environment <
        ``overrides`` (e.g. command-line options). Raises ConfigError."""
        env = os.environ if env is None else env
        data: dict[str, Any] = {}
        sources: dict[tuple[str, ...], str] = {}
        if path is None and env.get(CONFIG_ENV):
            path = Path(env[CONFIG_ENV])
        if path is not None:
            _merge(data, sources, _read_toml(path.expanduser()), str(path))
        for name, value in env.items():
            if name.startswith(ENV_PREFIX) and name != CONFIG_ENV:
                keys = tuple(k.lower() for k in name[len(ENV_PREFIX):].split("__"))
                _merge(data, sources, _nest(keys, value), name)
        for key, value in (overrides or {}).items():
            if value is not None:
                _merge(data, sources, {key: value}, "command line")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, sources)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _nest(keys: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: Any = value
    for key in reversed(keys):
        out = {key: out}
    result: dict[str, Any] = out
    return result


def _merge(into: dict[str, Any], sources: dict[tuple[str, ...], str],
           new: Mapping[str, Any], source: str, prefix: tuple[str, ...] = ()) -> None:
    """Deep-merge ``new`` into ``into``, remembering where each leaf value came from."""
    for key, value in new.items():
        loc = (*prefix, key)
        if isinstance(value, Mapping) and isinstance(into.get(key, {}), dict):
            into.setdefault(key, {})
            _merge(into[key], sources, value, source, loc)
        else:
            into[key] = value
            sources[loc] = source


def _describe(exc: ValidationError, sources: Mapping[tuple[str, ...], str]) -> str:
    """One readable line per problem: ``field: message (from SOURCE)``."""
    lines = ["invalid settings:"]
    for err in exc.errors():
        loc = tuple(str(part) for part in err["loc"])
        name = ".".join(loc) or "settings"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        origin = _source_of(loc, sources)
        lines.append(f"  {name}: {msg}" + (f" (from {origin})" if origin else ""))
    return "\n".join(lines)


def _source_of(loc: tuple[str, ...], sources: Mapping[tuple[str, ...], str]) -> str | None:
    for n in range(len(loc), 0, -1):
        if loc[:n] in sources:
            return sources[loc[:n]]
    found = {src for key, src in sources.items() if key[:len(loc)] == loc}
    return ", ".join(sorted(found)) or None
