"""``mls-bridge`` over XMPP, configured by a TOML file (``transport.kind = "xmpp"``)."""

from __future__ import annotations

from pathlib import Path

from tests.client.test_cli import run
from tests.servers.prosody import ProsodyServer

from .helpers import PASSWORD


def _config(root: Path, server: ProsodyServer, user: str) -> Path:
    server.register(user, PASSWORD)
    path = root / f"{user}.toml"
    path.write_text(f"""
state_dir = "{root / user}"

[transport]
kind = "xmpp"

[key_packages]
pool_size = 3
threshold = 1

[xmpp]
jid = "{user}@{server.domain}/cli"
password = "{PASSWORD}"
host = "127.0.0.1"
port = {server.port}
muc_service = "{server.muc_domain}"
allow_plaintext = true
""")
    return path


def test_cli_conversation_over_xmpp(prosody: ProsodyServer, tmp_path: Path) -> None:
    users = {}
    for name in ("clialice", "clibob"):
        cfg = _config(tmp_path, prosody, name)
        jid = f"{name}@{prosody.domain}"

        def cli(*args: str, cfg: Path = cfg, ok: bool = True) -> str:
            result = run("--config", cfg, *args, home=tmp_path)
            if ok:
                assert result.returncode == 0, result.stderr
            assert "Traceback" not in result.stderr
            return result.stdout + result.stderr

        users[name] = cli
        out = cli("identity", "create", f"xmpp:{jid}", "--client-id", f"{jid}/cli")
        assert f"xmpp:{jid} {jid}/cli" in out
    alice, bob = users["clialice"], users["clibob"]
    gid = alice("group", "create", "--name", "team").split()[0]
    assert "epoch 1: added" in alice("invite", "team", f"xmpp:clibob@{prosody.domain}")
    assert "joined group" in bob("read")
    alice("send", "team", "hello over xmpp")
    assert "hello over xmpp" in bob("read")
    bob("send", gid[:12], "hi alice")
    assert "hi alice" in alice("read")
    members = bob("members", gid[:12])
    assert f"xmpp:clialice@{prosody.domain}" in members
