"""The bridge service as its own process (``mls-bridge bridge --config bridge.toml``, as
it is deployed) between a private Prosody and Synapse: for the integration tests and
``python -m benchmarks.faults``."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from .prosody import ProsodyServer
from .synapse import SynapseServer

PASSWORD = "bridge-test-pw"


class BridgeProcess:
    """The bridge service in its own process, with its own state directory."""

    def __init__(self, root: Path, prosody: ProsodyServer, synapse: SynapseServer,
                 tag: str, password: str = PASSWORD) -> None:
        self.root = root
        self.prosody = prosody
        self.synapse = synapse
        self.xmpp_user = f"bridge{tag}"
        self.jid = prosody.register(self.xmpp_user, password)
        self.matrix_user = synapse.register(f"bridge{tag}", password)
        self.config = root / "bridge.toml"
        self.log = root / "bridge.log"
        self.state = root / "bridge-state"
        self._proc: subprocess.Popen[bytes] | None = None
        self.config.write_text(
            f'state_dir = "{self.state}"\nlog_file = "{self.log}"\n\n'
            f'[xmpp]\njid = "{self.jid}/relay"\npassword = "{password}"\n'
            f'host = "127.0.0.1"\nport = {prosody.port}\nallow_plaintext = true\n'
            f'muc_service = "{prosody.muc_domain}"\nsubmit_timeout = 20.0\n\n'
            f'[matrix]\nhomeserver = "{synapse.url}"\nuser_id = "{self.matrix_user}"\n'
            f'password = "{password}"\nlong_poll_ms = 1000\n')

    def identity(self, network: str) -> str:
        return f"xmpp:{self.jid}" if network == "xmpp" else f"matrix:{self.matrix_user}"

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait until it logged in to both networks."""
        mark = self.log.stat().st_size if self.log.exists() else 0
        out = (self.root / "bridge.out").open("ab")
        self._proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("mls-bridge")), "bridge", "--config",
             str(self.config)], stdout=out, stderr=subprocess.STDOUT)
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the bridge exited: {self.output()}")
            if self.log.exists() and b"bridge up" in self.log.read_bytes()[mark:]:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the bridge did not come up: {self.output()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(timeout=10)
        self._proc = None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        self._proc = None

    def output(self) -> str:
        texts = [p.read_text(errors="replace")[-3000:] for p in
                 (self.root / "bridge.out", self.log) if p.exists()]
        return "\n".join(texts)

    def stored_bytes(self) -> bytes:
        """Everything the bridge wrote: its log, output and every state file."""
        files = [self.log, self.root / "bridge.out", *self.state.rglob("*")]
        return b"".join(p.read_bytes() for p in files if p.is_file())
