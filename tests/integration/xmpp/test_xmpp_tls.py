"""XMPP over STARTTLS, as on a real network, against a Prosody that requires TLS with a
certificate from a throwaway private CA (devservers/tls.py): ``ca_file`` lets the client
in, and without it (or with another CA) the login is one clear error line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devservers.tls import ServerPki, make_pki
from tests.integration.cli_live import cli, fails_with
from tests.servers.prosody import ProsodyServer
from transports.base import LoginError
from transports.xmpp.transport import XmppDeliveryTransport

from .conftest import require_prosody
from .helpers import PASSWORD, XNet, xmpp_settings, xmpp_test


@pytest.fixture(scope="module")
def tls_prosody(tmp_path_factory: pytest.TempPathFactory,
                pki: ServerPki) -> Iterator[ProsodyServer]:
    """A second Prosody (own ports) that requires STARTTLS with the test CA's certificate."""
    require_prosody()
    server = ProsodyServer(tmp_path_factory.mktemp("prosody-tls"), tls=pki)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _untrusted(server: ProsodyServer) -> str:
    return (f"the certificate of the XMPP server at 127.0.0.1:{server.port} does not "
            "verify (")


@xmpp_test
async def test_starttls_with_ca_file_logs_in_and_a_group_talks(
        tls_prosody: ProsodyServer, pki: ServerPki, tmp_path: Path) -> None:
    net = XNet(tls_prosody, tmp_path, allow_plaintext=False, ca_file=pki.ca_file)
    try:
        alice, _ = await net.add("alice", "bob")
        for transport in net.transports.values():
            tls = transport.xmpp.transport.get_extra_info("ssl_object")
            assert tls is not None and tls.version() in ("TLSv1.2", "TLSv1.3")
            assert tls.getpeercert()["subjectAltName"] == (("DNS", "localhost"),
                                                           ("IP Address", "127.0.0.1"))
        gid = await alice.create_group(name="tls")
        await alice.add_members(gid, [net.user("bob")])
        await net.joined("bob", gid)
        await alice.send(gid, b"over STARTTLS")
        await net.wait_for(lambda: _has(net, "bob", gid, b"over STARTTLS"), "bob")
    finally:
        await net.close()


async def _has(net: XNet, name: str, group_id: bytes, text: bytes) -> bool:
    return text in net.received(name, group_id)


@xmpp_test
async def test_without_ca_file_the_certificate_is_one_clear_error(
        tls_prosody: ProsodyServer, tmp_path: Path) -> None:
    jid = tls_prosody.register("nocafile", PASSWORD) + "/main"
    with pytest.raises(LoginError) as err:
        await XmppDeliveryTransport.connect(
            xmpp_settings(tls_prosody, jid, allow_plaintext=False, connect_timeout=10))
    text = str(err.value)
    assert text.startswith(_untrusted(tls_prosody)) and "\n" not in text
    assert text.endswith("if a private CA signed it, set ca_file in [xmpp] to that CA's "
                         "PEM file")


@xmpp_test
async def test_a_ca_file_of_another_ca_is_refused(tls_prosody: ProsodyServer,
                                                  tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other")
    jid = tls_prosody.register("otherca", PASSWORD) + "/main"
    with pytest.raises(LoginError) as err:
        await XmppDeliveryTransport.connect(xmpp_settings(
            tls_prosody, jid, allow_plaintext=False, ca_file=other.ca_file,
            connect_timeout=10))
    assert str(err.value).startswith(_untrusted(tls_prosody))
    assert f"no CA of ca_file {other.ca_file} signed it" in str(err.value)


@xmpp_test
async def test_allow_plaintext_against_a_tls_server_says_to_remove_it(
        tls_prosody: ProsodyServer, tmp_path: Path) -> None:
    jid = tls_prosody.register("plainagainsttls", PASSWORD) + "/main"
    with pytest.raises(LoginError, match=r"the server requires TLS: remove allow_plaintext "
                                         r"from \[xmpp\]"):
        await XmppDeliveryTransport.connect(xmpp_settings(tls_prosody, jid,
                                                          connect_timeout=10))


@xmpp_test
async def test_an_unreadable_ca_file_is_one_clear_error(tls_prosody: ProsodyServer,
                                                        tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    with pytest.raises(LoginError, match=f"cannot use ca_file {missing} .*: it must be a "
                                         "readable PEM file of CA certificates"):
        await XmppDeliveryTransport.connect(xmpp_settings(
            tls_prosody, "x@localhost/main", allow_plaintext=False, ca_file=missing))


def _config(root: Path, server: ProsodyServer, user: str, extra: str = "") -> Path:
    """A user's settings file for the TLS server (no allow_plaintext)."""
    server.register(user, PASSWORD)
    path = root / f"{user}.toml"
    path.write_text(f'state_dir = "{root / user}"\n[transport]\nkind = "xmpp"\n[xmpp]\n'
                    f'jid = "{user}@{server.domain}"\npassword = "{PASSWORD}"\n'
                    f'host = "127.0.0.1"\nport = {server.port}\n{extra}')
    return path


def test_cli_over_starttls(tls_prosody: ProsodyServer, pki: ServerPki,
                           tmp_path: Path) -> None:
    """``ca_file`` in the settings file lets the CLI in; without it, one error line."""
    bare = _config(tmp_path, tls_prosody, "clinoca")
    line = fails_with(bare, "groups")
    assert line.startswith(f"mls-bridge: error: {_untrusted(tls_prosody)}")
    assert line.endswith("set ca_file in [xmpp] to that CA's PEM file")
    trusting = _config(tmp_path, tls_prosody, "cliwithca", f'ca_file = "{pki.ca_file}"\n')
    assert cli(trusting, "identity", "create").startswith("xmpp:cliwithca@localhost ")
    cli(trusting, "groups")  # logged in over STARTTLS
