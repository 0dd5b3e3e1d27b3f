"""Matrix over ``https://``, as on a real network: a second Synapse serves its client API
over TLS itself (a ``tls: true`` listener) with a certificate from a throwaway private CA
(devservers/tls.py). ``ca_file`` lets the client in; without it (or with another CA) the
login is one clear error line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devservers.tls import ServerPki, make_pki
from tests.client.helpers import async_test
from tests.integration.cli_live import cli, fails_with
from tests.servers.synapse import SynapseServer
from transports.base import LoginError, TransportError
from transports.matrix.transport import MatrixDeliveryTransport
from transports.media import http_download

from .conftest import PASSWORD, Homeserver, require_synapse
from .helpers import MatrixNet


@pytest.fixture(scope="module")
def tls_homeserver(tmp_path_factory: pytest.TempPathFactory,
                   pki: ServerPki) -> Iterator[Homeserver]:
    """A second Synapse whose client listener serves HTTPS only, with the test CA's
    certificate."""
    server = SynapseServer(tmp_path_factory.mktemp("synapse-tls"), python=require_synapse(),
                           tls=pki)
    server.start()
    try:
        yield Homeserver(server)
    finally:
        server.stop()


def _untrusted(url: str) -> str:
    return f"the certificate of the Matrix homeserver {url} does not verify ("


@async_test
async def test_https_with_ca_file_logs_in_and_a_group_talks(
        tls_homeserver: Homeserver, pki: ServerPki, tmp_path: Path) -> None:
    assert tls_homeserver.url.startswith("https://")
    net = MatrixNet(tmp_path, tls_homeserver)
    try:
        alice = await net.add("alice", ca_file=pki.ca_file)
        await net.add("bob", ca_file=pki.ca_file)
        gid = await alice.create_group(name="tls")
        await alice.add_members(gid, [net.identity("bob")])
        await net.sync()
        await alice.send(gid, b"over https")
        await net.sync()
        assert net.received("bob", gid) == [b"over https"]
    finally:
        await net.close()


async def _login(hs: Homeserver, root: Path, ca_file: Path | None) -> None:
    transport = await MatrixDeliveryTransport.connect(
        hs.url, hs.user("nocert"), password=PASSWORD, journal_path=root / "j.sqlite",
        ca_file=ca_file)
    await transport.close()


@async_test
async def test_without_ca_file_the_certificate_is_one_clear_error(
        tls_homeserver: Homeserver, tmp_path: Path) -> None:
    with pytest.raises(LoginError) as err:
        await _login(tls_homeserver, tmp_path, None)
    text = str(err.value)
    assert text.startswith(_untrusted(tls_homeserver.url)) and "\n" not in text
    assert text.endswith("set ca_file in [matrix] to that CA's PEM file")


@async_test
async def test_a_ca_file_of_another_ca_is_refused(tls_homeserver: Homeserver,
                                                  tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other")
    with pytest.raises(LoginError) as err:
        await _login(tls_homeserver, tmp_path, other.ca_file)
    assert str(err.value).startswith(_untrusted(tls_homeserver.url))
    assert f"no CA of ca_file {other.ca_file} signed it" in str(err.value)


@async_test
async def test_attachments_download_with_the_ca_file_too(
        tls_homeserver: Homeserver, pki: ServerPki, tmp_path: Path) -> None:
    """An attachment's URL is on the HTTPS homeserver: downloads trust ``ca_file``
    (besides the system's CAs, as MLSClient.fetch_attachment passes it)."""
    transport = await MatrixDeliveryTransport.connect(
        tls_homeserver.url, tls_homeserver.user("media"), password=PASSWORD,
        journal_path=tmp_path / "j.sqlite", ca_file=pki.ca_file)
    try:
        url = await transport.upload_media(b"sealed blob")
    finally:
        await transport.close()
    assert url.startswith(tls_homeserver.url + "/")
    assert await http_download(url, 100, ca_file=pki.ca_file) == b"sealed blob"
    with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        await http_download(url, 100)


def _config(root: Path, hs: Homeserver, name: str, extra: str = "") -> Path:
    """A user's settings file for the HTTPS homeserver."""
    path = root / f"{name}.toml"
    path.write_text(f'state_dir = "{root / name}"\n[transport]\nkind = "matrix"\n'
                    f'[matrix]\nhomeserver = "{hs.url}"\nuser_id = "{hs.user(name)}"\n'
                    f'password = "{PASSWORD}"\n{extra}')
    return path


def test_cli_over_https(tls_homeserver: Homeserver, pki: ServerPki, tmp_path: Path) -> None:
    """``ca_file`` in the settings file lets the CLI in; without it, one error line."""
    line = fails_with(_config(tmp_path, tls_homeserver, "clinoca"), "groups")
    assert line.startswith(f"mls-bridge: error: {_untrusted(tls_homeserver.url)}")
    assert line.endswith("set ca_file in [matrix] to that CA's PEM file")
    trusting = _config(tmp_path, tls_homeserver, "cliwithca", f'ca_file = "{pki.ca_file}"\n')
    assert cli(trusting, "identity", "create").startswith("matrix:@cliwithca")
    cli(trusting, "groups")  # logged in over https
