"""An MLS echo bot over XMPP: it joins every group it is added to and answers each
message with ``echo: <text>``.

Run it with a client settings file whose transport is XMPP::

    state_dir = "~/.local/state/mls-echo-bot"
    [transport]
    kind = "xmpp"
    [xmpp]
    jid = "echobot@example.org/bot"
    password = "..."

    .venv/bin/python examples/xmpp_bot.py --config bot.toml   # --metrics-port 9464: Prometheus

The first run creates the bot's identity (``xmpp:<bare JID>``, client id = the full JID)
and publishes KeyPackages; then any member can add ``xmpp:echobot@example.org`` to a
group. The bot runs through the ``mls_bridge`` slixmpp plugin
(:meth:`~transports.xmpp.plugin.MLSBridgePlugin.run_client`); its client keeps room
access and MLS membership consistent (as any ``MLSClient`` does). Stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from mls_cli.main import add_metrics_arguments
from mls_client import MLSClient, Settings
from mls_client.events import ClientEvent, GroupJoined, MessageReceived
from transports.xmpp.transport import XmppDeliveryTransport

log = logging.getLogger("xmpp_bot")
PREFIX = "echo: "


class EchoBot:
    """Answers every decrypted message in its group (never its own or other echoes)."""

    def __init__(self, client: MLSClient) -> None:
        self.client = client
        self.answered = 0

    async def on_event(self, event: ClientEvent) -> None:
        if isinstance(event, GroupJoined):
            log.info("joined group %s at epoch %d", event.group_id.hex()[:16], event.epoch)
        elif isinstance(event, MessageReceived) and not event.text.startswith(PREFIX):
            # a reply (MIMI inReplyTo) when the message has an id; plain text otherwise
            if event.message_id is not None:
                await self.client.reply(event.group_id, event.message_id, PREFIX + event.text)
            else:
                await self.client.send_text(event.group_id, PREFIX + event.text)
            self.answered += 1


async def open_bot(settings_path: Path | None) -> tuple[MLSClient, XmppDeliveryTransport]:
    """The bot's client on an XMPP transport (identity created on first run)."""
    settings = Settings.load(settings_path)
    if settings.xmpp is None:
        raise SystemExit("the settings need an [xmpp] table")
    transport = await XmppDeliveryTransport.connect(settings.xmpp)
    client = await MLSClient.open(settings, transport)
    if await client.store.identity() is None:  # first run
        await client.create_identity(transport.user_id, transport.client_id)
    await client.publish_key_packages()
    return client, transport


async def run(settings_path: Path | None, stop: asyncio.Event, *,
              metrics_port: int | None = None, metrics_host: str = "127.0.0.1") -> int:
    client, transport = await open_bot(settings_path)
    bot = EchoBot(client)
    log.info("%s is listening as %s", transport.client_id, transport.user_id)
    server = None
    try:
        if metrics_port is not None:  # needs the 'metrics' extra (docs/operations.md)
            from mls_client.metrics import serve_client_metrics

            server = await serve_client_metrics(client, metrics_host, metrics_port)
        await transport.plugin.run_client(client, stop, bot.on_event)
    finally:
        if server is not None:
            await server.close()
        await client.close()
        await transport.close()
    return bot.answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="client settings TOML file")
    add_metrics_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    stop = asyncio.Event()

    async def go() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        answered = await run(args.config, stop, metrics_port=args.metrics_port,
                             metrics_host=args.metrics_host)
        log.info("answered %d message(s)", answered)

    asyncio.run(go())


if __name__ == "__main__":
    main()
