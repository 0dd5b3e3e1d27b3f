"""Opening the transport the settings name (mls_client/transport_factory.py): the XMPP
resource of a device comes from its state directory, never a shared default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mls_client.settings import Settings
from mls_client.store import Store
from mls_client.transport_factory import with_xmpp_device

from .helpers import async_test


def _settings(state: Path, **xmpp: Any) -> Settings:
    return Settings.model_validate({
        "state_dir": state, "transport": {"kind": "xmpp"},
        "xmpp": {"password": "pw", "jid": "alice@example.org", **xmpp}})


async def _full_jid(settings: Settings) -> str:
    xmpp = (await with_xmpp_device(settings)).xmpp
    assert xmpp is not None
    return xmpp.full_jid


@async_test
async def test_the_resource_is_the_stored_devices_or_a_new_random_one(tmp_path: Path) -> None:
    """Two state directories configured with the same bare JID get two resources (two
    devices, no stream conflict, RFC 6120 §4.9.3.3); one that holds an identity keeps
    the resource of its client id."""
    one, two = _settings(tmp_path / "cli"), _settings(tmp_path / "bot")
    fresh = {await _full_jid(one), await _full_jid(two)}
    assert len(fresh) == 2 and all(j.startswith("alice@example.org/mls-") for j in fresh)
    store = await Store.open(one.client_db_path)
    async with store.transaction() as tx:
        await tx.set_identity("xmpp:alice@example.org", "alice@example.org/laptop")
    await store.close()
    assert await _full_jid(one) == await _full_jid(one) == "alice@example.org/laptop"


@async_test
async def test_a_configured_resource_or_device_is_kept(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s" / "client.sqlite")
    async with store.transaction() as tx:
        await tx.set_identity("xmpp:alice@example.org", "alice@example.org/laptop")
    await store.close()
    assert await _full_jid(_settings(tmp_path / "s", jid="alice@example.org/phone")) == \
        "alice@example.org/phone"
    assert await _full_jid(_settings(tmp_path / "s", device="bot")) == "alice@example.org/bot"
    # an identity of another account names no device of this one
    other = _settings(tmp_path / "s", jid="bob@example.org")
    assert (await _full_jid(other)).startswith("bob@example.org/mls-")
