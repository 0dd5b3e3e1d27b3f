"""The bot framework, room membership mapping and ``mls-bridge`` over a real Synapse."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mls_cli.main import main
from mls_client import Settings
from mls_client.events import MessageReceived, RemovedFromGroup
from mls_client.matrix_bot import MatrixBot
from tests.client.helpers import async_test
from transports.matrix.api import CLIENT, quote
from transports.matrix.journal import MembershipChange

from .conftest import PASSWORD, Homeserver
from .helpers import MatrixNet


def matrix_settings(root: Path, name: str, user_id: str, url: str) -> Settings:
    return Settings.model_validate({
        "state_dir": root / name, "transport": {"kind": "matrix"}, "poll_interval": 0.05,
        "key_packages": {"pool_size": 3, "threshold": 1},
        "matrix": {"homeserver": url, "user_id": user_id, "password": PASSWORD,
                   "device_id": name.upper(), "long_poll_ms": 500}})


@async_test
async def test_echo_bot_and_kick_removes_from_group(tmp_path: Path,
                                                    homeserver: Homeserver) -> None:
    net = MatrixNet(tmp_path, homeserver)
    bot = await MatrixBot.start(matrix_settings(tmp_path, "bot", homeserver.user("bot"),
                                                homeserver.url))
    changes: list[MembershipChange] = []

    @bot.on_message
    async def echo(b: MatrixBot, msg: MessageReceived) -> None:
        await b.client.send(msg.group_id, b"echo: " + msg.data)

    @bot.on_membership
    async def seen(b: MatrixBot, change: MembershipChange) -> None:
        changes.append(change)

    try:
        await net.add("alice")
        await net.add("bob")
        gid = await bot.client.create_group()
        await bot.client.add_members(gid, [net.identity("alice"), net.identity("bob")])
        await net.sync()
        stop = asyncio.Event()
        runner = asyncio.create_task(bot.run(stop))
        await net["alice"].send(gid, b"hi bot")
        for _ in range(100):
            await net.sync("alice")
            if b"echo: hi bot" in net.received("alice", gid):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await runner
        assert net.received("alice", gid) == [b"echo: hi bot"]

        # bob is kicked from the room: the bot (leaf 0, lowest remaining) removes him
        room = bot.transport.room_id(gid)
        assert room is not None
        await bot.transport.api.request("POST", f"{CLIENT}/rooms/{quote(room)}/kick",
                                        {"user_id": net.users["bob"], "reason": "test"})
        for _ in range(50):
            await bot.step()
            if len(await bot.client.members(gid)) == 2:
                break
        await net.sync()
        # bob no longer sees the room, so he cannot see the Commit that removed him
        assert not any(isinstance(e, RemovedFromGroup) for e in net.events["bob"])
        assert any(c.user_id == net.users["bob"] and c.kicked_or_banned for c in changes)
        names = [(m.credential.identity or b"").decode()
                 for m in await net["alice"].members(gid)]
        assert sorted(names) == sorted([net.identity("alice"), bot.transport.identity])
        await net.agree(gid, ["alice"])
        assert await net["alice"].epoch_authenticator(gid) == \
            await bot.client.epoch_authenticator(gid)
    finally:
        await bot.close()
        await net.close()


def test_mls_bridge_cli_over_matrix(tmp_path: Path, homeserver: Homeserver,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """``transport.kind = "matrix"`` + ``[matrix]`` in a TOML file: the CLI works."""
    configs = {}
    for name in ("alice", "bob"):
        user = homeserver.user(name)
        path = tmp_path / f"{name}.toml"
        path.write_text(f'state_dir = "{tmp_path / name}"\npoll_interval = 0.05\n'
                        f'[transport]\nkind = "matrix"\n'
                        f'[matrix]\nhomeserver = "{homeserver.url}"\nuser_id = "{user}"\n'
                        f'password = "{PASSWORD}"\ndevice_id = "{name.upper()}"\n'
                        f'long_poll_ms = 200\n')
        configs[name] = (str(path), user)
        assert main(["--config", str(path), "identity", "create", f"matrix:{user}",
                     "--client-id", f"{user}/{name.upper()}"]) == 0
    alice, bob = configs["alice"], configs["bob"]
    capsys.readouterr()
    assert main(["--config", alice[0], "group", "create", "--name", "team"]) == 0
    assert main(["--config", alice[0], "invite", "team", f"matrix:{bob[1]}"]) == 0
    assert main(["--config", alice[0], "send", "team", "hello over matrix"]) == 0
    capsys.readouterr()
    assert main(["--config", bob[0], "read"]) == 0
    out = capsys.readouterr().out
    assert "hello over matrix" in out and f"matrix:{alice[1]}" in out
