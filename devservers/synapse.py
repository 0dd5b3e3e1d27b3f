"""A private Synapse on 127.0.0.1 (tests, `mls-bridge demo --real`): free port, temp dirs.

Follows the verified facts in ``shared/reference/servers.md``: Synapse from PyPI in its own
virtualenv (``scripts/install_synapse.sh`` → ``.servers/synapse-venv``), a hand-written
config (SQLite, one ``client`` listener on 127.0.0.1, HTTPS only when given a certificate
from :mod:`devservers.tls`, no federation, every ``rc_*`` rate limit raised), keys
generated once with ``--generate-keys``, users registered through the shared-secret admin
API (``/_synapse/admin/v1/register``). Everything lives in the data
directory, so :meth:`SynapseServer.restart` keeps users, rooms, keys and media.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import kill, terminate
from .tls import ServerPki

SERVER_NAME = "localhost"
START_TIMEOUT = 60.0
REPO = Path(__file__).resolve().parents[1]
DEFAULT_VENV = REPO / ".servers" / "synapse-venv"

#: every rate limit raised far above what the tests do (defaults allow 0.2 messages/s)
_FAST = {"per_second": 10000, "burst_count": 100000}
_RATE_LIMITS: dict[str, Any] = {
    "rc_message": _FAST, "rc_registration": _FAST, "rc_admin_redaction": _FAST,
    "rc_login": {"address": _FAST, "account": _FAST, "failed_attempts": _FAST},
    "rc_joins": {"local": _FAST, "remote": _FAST}, "rc_joins_per_room": _FAST,
    "rc_invites": {"per_room": _FAST, "per_user": _FAST, "per_issuer": _FAST},
    "rc_key_requests": _FAST, "rc_3pid_validation": _FAST, "rc_third_party_invite": _FAST,
    "rc_media_create": _FAST, "rc_room_creation": _FAST, "rc_reports": _FAST,
    "rc_presence": {"per_user": _FAST}, "rc_delayed_event_mgmt": _FAST,
    "rc_user_directory": _FAST, "rc_profile": _FAST,
    "rc_federation": {"window_size": 1000, "sleep_limit": 10000, "sleep_delay": 1,
                      "reject_limit": 100000, "concurrent": 1000},
}

_LOG_CONFIG = """\
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: {log}
root:
  level: WARNING
  handlers: [file]
disable_existing_loggers: false
"""


class SynapseUnavailable(RuntimeError):
    """Synapse is not installed (run ``bash scripts/install_synapse.sh``)."""


def synapse_python(venv: Path | None = None) -> Path:
    """The interpreter of the Synapse virtualenv; raises SynapseUnavailable if missing."""
    venv = venv or Path(os.environ.get("SYNAPSE_VENV", DEFAULT_VENV))
    python = venv / "bin" / "python"
    if not python.exists():
        raise SynapseUnavailable(f"no Synapse virtualenv at {venv}: run "
                                 "`bash scripts/install_synapse.sh`")
    probe = subprocess.run([str(python), "-c", "import synapse"], capture_output=True,
                           check=False)
    if probe.returncode != 0:
        raise SynapseUnavailable(f"{venv} has no working synapse package")
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class SynapseServer:
    """One Synapse process; :meth:`start` it, :meth:`stop` it (or use ``with``)."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    python: Path = field(default_factory=synapse_python)
    shared_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    max_upload_size: str = "50M"
    #: a certificate (devservers/tls.py): the client listener then serves HTTPS only
    tls: ServerPki | None = None
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'http' if self.tls is None else 'https'}://127.0.0.1:{self.port}"

    def _open(self, request: str | urllib.request.Request,
              timeout: float) -> Any:
        """``urlopen``, trusting the test CA when the listener serves HTTPS."""
        context = None if self.tls is None else ssl.create_default_context(
            cafile=str(self.tls.ca_file))
        return urllib.request.urlopen(request, timeout=timeout, context=context)

    @property
    def config_path(self) -> Path:
        return self.data_dir / "homeserver.yaml"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "homeserver.log"

    def write_config(self) -> None:
        """The test config (JSON is valid YAML) and its logging config."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_config = self.data_dir / "log.yaml"
        log_config.write_text(_LOG_CONFIG.format(log=self.log_path))
        config: dict[str, Any] = {
            "server_name": SERVER_NAME,
            "pid_file": str(self.data_dir / "homeserver.pid"),
            "listeners": [{"port": self.port, "bind_addresses": ["127.0.0.1"],
                           "type": "http", "tls": self.tls is not None,
                           "x_forwarded": False,
                           "resources": [{"names": ["client"], "compress": False}]}],
            "database": {"name": "sqlite3",
                         "args": {"database": str(self.data_dir / "homeserver.db")}},
            "media_store_path": str(self.data_dir / "media"),
            "max_upload_size": self.max_upload_size,
            # MIMI attachments (docs/content.md): their URL is an ordinary HTTP URL that
            # a member on another network (through the bridge) fetches without a Matrix
            # token; Synapse >= 1.120 otherwise serves new media only on the
            # authenticated endpoints (MSC3916). The content is AES-GCM encrypted.
            "enable_authenticated_media": False,
            "signing_key_path": str(self.data_dir / "signing.key"),
            "log_config": str(log_config),
            "trusted_key_servers": [],
            "federation_domain_whitelist": [],
            "report_stats": False,
            "presence": {"enabled": False},
            "registration_shared_secret": self.shared_secret,
            "macaroon_secret_key": secrets.token_hex(16),
            "form_secret": secrets.token_hex(16),
            "bcrypt_rounds": 4,
            "suppress_key_server_warning": True,
            **_RATE_LIMITS,
        }
        if self.tls is not None:
            config["tls_certificate_path"] = str(self.tls.cert_file)
            config["tls_private_key_path"] = str(self.tls.key_file)
        self.config_path.write_text(json.dumps(config, indent=1))

    def generate_keys(self) -> None:
        subprocess.run([str(self.python), "-m", "synapse.app.homeserver", "--config-path",
                        str(self.config_path), "--generate-keys"], check=True,
                       capture_output=True, cwd=self.data_dir)

    def start(self) -> None:
        """Write the config and keys on first start, start Synapse, wait until ready."""
        if not self.config_path.exists():
            self.write_config()
            self.generate_keys()
        log = (self.data_dir / "stdout.log").open("ab")
        self._proc = subprocess.Popen(
            [str(self.python), "-m", "synapse.app.homeserver", "--config-path",
             str(self.config_path)], stdout=log, stderr=subprocess.STDOUT,
            cwd=self.data_dir, start_new_session=True)
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"synapse exited with {self._proc.returncode}; see "
                                   f"{self.data_dir / 'stdout.log'}")
            try:
                with self._open(f"{self.url}/_matrix/client/versions", 2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"synapse did not answer within {START_TIMEOUT} s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        terminate(proc, 15)

    def kill(self) -> None:
        """SIGKILL (a crash: no shutdown code runs); :meth:`start` brings it back on the
        same port and data."""
        proc, self._proc = self._proc, None
        kill(proc)

    def restart(self) -> None:
        """Stop and start again on the same port and data (nothing is lost)."""
        self.stop()
        self.start()

    def __enter__(self) -> SynapseServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ users

    def _post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data,
                                     headers={"Content-Type": "application/json"},
                                     method="GET" if body is None else "POST")
        with self._open(req, 10) as resp:
            out: dict[str, Any] = json.load(resp)
            return out

    def register(self, localpart: str, password: str, *, admin: bool = False) -> str:
        """Create a user through the shared-secret admin API; returns the user id."""
        nonce = self._post("/_synapse/admin/v1/register")["nonce"]
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode(),
                                 b"admin" if admin else b"notadmin"]))
        out = self._post("/_synapse/admin/v1/register", {
            "nonce": nonce, "username": localpart, "password": password, "admin": admin,
            "mac": mac.hexdigest()})
        user_id: str = out["user_id"]
        return user_id
