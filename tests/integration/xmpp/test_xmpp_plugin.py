"""The ``mls_bridge`` plugin on an application's own slixmpp client: register it,
attach the transport to the connection, run an MLSClient, get typed events."""

from __future__ import annotations

import asyncio
from pathlib import Path

import slixmpp

import transports.xmpp.plugin  # registers mls_bridge with slixmpp
from mls_client import MLSClient
from mls_client.events import ClientEvent, GroupJoined, MessageReceived
from tests.servers.prosody import ProsodyServer
from transports.xmpp.plugin import MLSBridgePlugin
from transports.xmpp.transport import XmppDeliveryTransport

from .helpers import PASSWORD, XNet, xmpp_settings, xmpp_test


@xmpp_test
async def test_plugin_on_an_application_client(prosody: ProsodyServer,
                                               tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    app: slixmpp.ClientXMPP | None = None
    stop = asyncio.Event()
    try:
        await net.add("alice")
        jid = net.jid("carol.app")
        await asyncio.to_thread(prosody.register, jid.split("@")[0], PASSWORD)
        settings = xmpp_settings(prosody, jid)
        # the application's own client: plugin registered by name, connected by the app
        assert transports.xmpp.plugin.MLSBridgePlugin.name == "mls_bridge"
        app = slixmpp.ClientXMPP(jid, PASSWORD)
        app.enable_starttls = app.enable_direct_tls = False
        app.enable_plaintext = True
        app.plugin["feature_mechanisms"].unencrypted_scram = True
        app.register_plugin("xep_0045")
        app.register_plugin("mls_bridge")
        started = asyncio.Event()
        app.add_event_handler("session_start", lambda _e: started.set())
        app.connect("127.0.0.1", prosody.port)
        await asyncio.wait_for(started.wait(), 20)

        transport = await XmppDeliveryTransport.attach(app, settings)
        client = await MLSClient.open(net.settings("carol.app"), transport)
        await client.create_identity(transport.user_id, transport.client_id)
        await client.publish_key_packages()
        decrypted: list[MessageReceived] = []
        events: list[ClientEvent] = []
        app.add_event_handler("mls_message", decrypted.append)
        app.add_event_handler("mls_event", events.append)
        bridge: MLSBridgePlugin = app.plugin["mls_bridge"]  # type: ignore[typeddict-item]
        runner = asyncio.ensure_future(bridge.run_client(client, stop))

        gid = await net["alice"].create_group()
        await net["alice"].add_members(gid, [transport.user_id])
        await net["alice"].send(gid, b"hello plugin")
        for _ in range(300):
            if decrypted:
                break
            await asyncio.sleep(0.05)
        assert [m.data for m in decrypted] == [b"hello plugin"]
        assert any(isinstance(e, GroupJoined) for e in events)
        stop.set()
        await asyncio.wait_for(runner, 20)
        await client.close()
        await transport.close()
        assert app.is_connected()  # the transport leaves the app's connection alone
    finally:
        stop.set()
        if app is not None:
            app.disconnect(wait=1.0)
        await net.close()
