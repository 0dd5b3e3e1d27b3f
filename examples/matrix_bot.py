"""An MLS echo bot for Matrix: answers every decrypted message with ``echo: <text>``.

Run it against your homeserver with a settings file::

    # bot.toml
    state_dir = "~/.local/state/mls-echo-bot"
    [transport]
    kind = "matrix"
    [matrix]
    homeserver = "https://matrix.example.org"
    user_id = "@echo-bot:example.org"
    password = "..."          # or access_token = "..."
    device_id = "ECHOBOT"

    .venv/bin/python examples/matrix_bot.py --config bot.toml   # --metrics-port 9464: Prometheus

Then, from another MLS client (e.g. ``mls-bridge`` with its own ``[matrix]`` table),
create a group and ``invite`` ``matrix:@echo-bot:example.org``: the bot joins the room
from the Welcome, decrypts, and echoes. Kicking a user from the room makes the bot remove
them from the MLS group when it is the lowest-index remaining member the group's room
policy allows to remove; when the bot may change the room's power levels it keeps them in
step with the policy (see ``docs/matrix.md``, "Access control").
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from mls_cli.main import add_metrics_arguments
from mls_client import Settings
from mls_client.events import MessageReceived
from mls_client.matrix_bot import MatrixBot
from transports.matrix.journal import MembershipChange


async def run(config: Path, metrics_port: int | None = None,
              metrics_host: str = "127.0.0.1") -> None:
    bot = await MatrixBot.start(Settings.load(config))
    print(f"echo bot running as {bot.transport.client_id} "
          f"(identity {bot.transport.identity})", flush=True)

    @bot.on_message
    async def echo(b: MatrixBot, msg: MessageReceived) -> None:
        if msg.message_id is not None:  # MIMI content: answer as a reply
            await b.client.reply(msg.group_id, msg.message_id, f"echo: {msg.text}")
        else:
            await b.client.send_text(msg.group_id, f"echo: {msg.text}")

    @bot.on_membership
    async def membership(b: MatrixBot, change: MembershipChange) -> None:
        print(f"{change.user_id}: {change.membership} (by {change.sender})", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = None
    try:
        if metrics_port is not None:  # needs the 'metrics' extra (docs/operations.md)
            from mls_client.metrics import serve_client_metrics

            server = await serve_client_metrics(bot.client, metrics_host, metrics_port)
        await bot.run(stop)
    finally:
        if server is not None:
            await server.close()
        await bot.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="TOML settings file")
    add_metrics_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    asyncio.run(run(args.config, args.metrics_port, args.metrics_host))


if __name__ == "__main__":
    main()
