"""examples/xmpp_bot.py answers in a real group over a real Prosody."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from tests.servers.prosody import ProsodyServer

from .helpers import PASSWORD, XNet, xmpp_test

BOT = Path(__file__).resolve().parents[3] / "examples" / "xmpp_bot.py"


def _load_bot() -> ModuleType:
    spec = importlib.util.spec_from_file_location("xmpp_bot", BOT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["xmpp_bot"] = module
    spec.loader.exec_module(module)
    return module


@xmpp_test
async def test_echo_bot_answers(prosody: ProsodyServer, tmp_path: Path) -> None:
    bot = _load_bot()
    net = XNet(prosody, tmp_path)
    bot_user = f"echobot{net.tag}"
    await asyncio.to_thread(prosody.register, bot_user, PASSWORD)
    config = tmp_path / "bot.toml"
    config.write_text(f"""
state_dir = "{tmp_path / 'bot'}"
poll_interval = 0.05
[transport]
kind = "xmpp"
[xmpp]
jid = "{bot_user}@{prosody.domain}/bot"
password = "{PASSWORD}"
host = "127.0.0.1"
port = {prosody.port}
muc_service = "{prosody.muc_domain}"
allow_plaintext = true
""")
    stop = asyncio.Event()
    task = asyncio.ensure_future(bot.run(config, stop))
    try:
        await net.add("alice")
        gid = await net["alice"].create_group()

        async def bot_added() -> bool:
            if task.done():
                task.result()
            result = await net["alice"].add_members(gid, [f"xmpp:{bot_user}@localhost"])
            return not result.missing_users

        await net.wait_for(bot_added, timeout=20)
        await net["alice"].send(gid, b"ping")

        async def echoed() -> bool:
            return "echo: ping" in net.texts("alice", gid)

        await net.wait_for(echoed, "alice", timeout=20)
    finally:
        stop.set()
        try:
            answered = await asyncio.wait_for(task, 20)
        finally:
            await net.close()
    assert answered == 1
