"""The first chat of README.md over a real Synapse, as a user runs it: ``listen
--json``, ``send``, a piped ``chat``; and each login or invite mistake is one clear line."""

from __future__ import annotations

from pathlib import Path

from tests.integration.cli_live import cli, conversation, fails_with, listen_through_a_restart
from tests.servers.synapse import free_port

from .conftest import PASSWORD, Homeserver


def _config(root: Path, user: str, homeserver: str, name: str, **change: str) -> Path:
    """A user's settings file, as README.md's first chat writes it."""
    settings = {"homeserver": f'"{homeserver}"', "user_id": f'"{user}"',
                "password": f'"{PASSWORD}"', **change}
    path = root / f"{name}.toml"
    path.write_text(f'state_dir = "{root / name}"\n[transport]\nkind = "matrix"\n'
                    "[matrix]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    return path


def test_first_chat_over_matrix(homeserver: Homeserver, tmp_path: Path) -> None:
    alice_id, bob_id = homeserver.user("alice"), homeserver.user("bob")
    alice = _config(tmp_path, alice_id, homeserver.url, "alice")
    bob = _config(tmp_path, bob_id, homeserver.url, "bob")
    conversation(alice, bob, f"matrix:{alice_id}", f"matrix:{bob_id}")


def test_matrix_mistakes_are_one_clear_line(homeserver: Homeserver, tmp_path: Path) -> None:
    user, url = homeserver.user("carol"), homeserver.url
    wrong = _config(tmp_path, user, url, "wrong", password='"not it"')
    assert f"the homeserver {url} refused the login of {user}: wrong password, or no " \
           "such user; check [matrix] user_id and password" in fails_with(wrong, "groups")
    path = _config(tmp_path, user, url + "/matrix", "path")
    assert f"{url}/matrix does not answer as a Matrix homeserver (HTTP 404): check " \
           "[matrix] homeserver" in fails_with(path, "groups")
    bare = url.removeprefix("http://")
    scheme = _config(tmp_path, user, bare, "scheme")
    assert f"'{bare}' is not a URL: write it with its scheme" in fails_with(scheme, "groups")
    down = f"http://127.0.0.1:{free_port()}"
    assert f"cannot reach the Matrix homeserver at {down}" in fails_with(
        _config(tmp_path, user, down, "down"), "groups")

    carol = _config(tmp_path, user, url, "carol")
    dave_id, nomls = homeserver.user("dave"), homeserver.user("nomls")
    dave = _config(tmp_path, dave_id, url, "dave")
    cli(carol, "identity", "create")
    cli(dave, "identity", "create")
    cli(carol, "group", "create", "--name", "team")
    for who in ("matrix:@nobody-here:localhost", f"matrix:{nomls}"):
        assert f"{who} has no MLS identity to add" in fails_with(carol, "invite", "team", who)
    cli(carol, "invite", "team", f"matrix:{dave_id}")
    assert f"matrix:{dave_id} is already a member of team" in fails_with(
        carol, "invite", "team", f"matrix:{dave_id}")


def test_listen_stays_connected_through_a_homeserver_restart(homeserver: Homeserver,
                                                            tmp_path: Path) -> None:
    """``listen`` rides out Synapse going away and coming back (its sync loop retries
    with backoff, docs/resilience.md): the message sent after the restart is printed,
    and ``listen`` is still running, then ends cleanly."""
    alice_id, bob_id = homeserver.user("rsalice"), homeserver.user("rsbob")
    alice = _config(tmp_path, alice_id, homeserver.url, "rsalice")
    bob = _config(tmp_path, bob_id, homeserver.url, "rsbob")
    server = homeserver.server
    try:
        listen_through_a_restart(alice, bob, f"matrix:{bob_id}", server.stop, server.start)
    finally:
        if server._proc is None:  # keep the session's server up for the other tests
            server.start()
