"""The first chat of README.md over a real Prosody, as a user runs it: ``listen --json``,
``send``, a piped ``chat``; and each login or invite mistake is one clear line."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.client.test_cli import run
from tests.integration.cli_live import (
    cli,
    conversation,
    fails_with,
    listen_through_a_restart,
)
from tests.servers.prosody import ProsodyServer, free_port

from .helpers import PASSWORD


def _config(root: Path, server: ProsodyServer, user: str, *, register: bool = True,
            **change: str) -> Path:
    """A user's settings file, as README.md's first chat writes it."""
    if register:
        server.register(user, PASSWORD)
    settings = {"jid": f'"{user}@{server.domain}"', "password": f'"{PASSWORD}"',
                "host": '"127.0.0.1"', "port": str(server.port),
                "allow_plaintext": "true", **change}
    path = root / f"{user}.toml"
    path.write_text(f'state_dir = "{root / user}"\n[transport]\nkind = "xmpp"\n[xmpp]\n'
                    + "".join(f"{k} = {v}\n" for k, v in settings.items() if v))
    return path


def test_first_chat_over_xmpp(prosody: ProsodyServer, tmp_path: Path) -> None:
    alice = _config(tmp_path, prosody, "firstalice")
    bob = _config(tmp_path, prosody, "firstbob")
    conversation(alice, bob, f"xmpp:firstalice@{prosody.domain}",
                 f"xmpp:firstbob@{prosody.domain}")


def test_xmpp_mistakes_are_one_clear_line(prosody: ProsodyServer, tmp_path: Path) -> None:
    wrong_password = _config(tmp_path, prosody, "errwrong", password='"not it"')
    assert "refused the login of errwrong@localhost: wrong password, or no such " \
           "account; check [xmpp] jid and password" in fails_with(wrong_password, "groups")
    no_tls = _config(tmp_path, prosody, "errtls", allow_plaintext="")
    line = fails_with(no_tls, "groups")
    assert f"no secure XMPP login at 127.0.0.1:{prosody.port}" in line
    assert "set allow_plaintext = true in [xmpp]" in line
    port = free_port()
    down = _config(tmp_path, prosody, "errdown", port=str(port))
    assert f"cannot reach the XMPP server at 127.0.0.1:{port}" in fails_with(down, "groups")

    alice = _config(tmp_path, prosody, "erralice")
    bob = _config(tmp_path, prosody, "errbob")
    _config(tmp_path, prosody, "errnomls")
    cli(alice, "identity", "create")
    cli(bob, "identity", "create")
    cli(alice, "group", "create", "--name", "team")
    for user in (f"xmpp:errnobody@{prosody.domain}", f"xmpp:errnomls@{prosody.domain}"):
        assert f"{user} has no MLS identity to add" in fails_with(alice, "invite", "team",
                                                                   user)
    cli(alice, "invite", "team", f"xmpp:errbob@{prosody.domain}")
    assert f"xmpp:errbob@{prosody.domain} is already a member of team" in fails_with(
        alice, "invite", "team", f"xmpp:errbob@{prosody.domain}")


def test_listen_stays_connected_through_a_server_restart(prosody: ProsodyServer,
                                                         tmp_path: Path) -> None:
    alice = _config(tmp_path, prosody, "restartalice")
    bob = _config(tmp_path, prosody, "restartbob")
    listen_through_a_restart(alice, bob, f"xmpp:restartbob@{prosody.domain}",
                             prosody.stop, prosody.start)


def test_a_silent_port_gets_a_progress_line(tmp_path: Path) -> None:
    """A port that accepts but never answers: a progress line after 2 s, then one
    error line naming the address (instead of a silent wait)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        path = tmp_path / "silent.toml"
        path.write_text(f'state_dir = "{tmp_path / "silent"}"\n[transport]\nkind = "xmpp"\n'
                        f'[xmpp]\njid = "nobody@localhost"\npassword = "x"\n'
                        f'host = "127.0.0.1"\nport = {port}\nconnect_timeout = 4\n')
        result = run("--config", path, "groups", home=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"connecting to the XMPP server 127.0.0.1:{port} ... (Ctrl-C to give up)",
        f"mls-bridge: error: no XMPP login at 127.0.0.1:{port} within 4 s: is that the "
        "server's client port (usually 5222)? Check [xmpp] host and port"]


def test_verbose_shows_the_library_lines(prosody: ProsodyServer, tmp_path: Path) -> None:
    wrong = _config(tmp_path, prosody, "verbosewrong", password='"not it"')
    quiet = run("--config", wrong, "groups", home=tmp_path)
    loud = run("groups", "--config", wrong, "-v", home=tmp_path)
    assert quiet.returncode == loud.returncode == 1
    assert "slixmpp" not in quiet.stderr and "slixmpp" in loud.stderr
