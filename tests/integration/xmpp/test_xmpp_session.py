"""One full JID, two sessions, on a real Prosody: the replaced session stops with a
clear error (stream ``conflict``, RFC 6120 §4.9.3.3) instead of fighting back."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest

from mls_client.events import ClientEvent, ConnectionLost
from tests.servers.prosody import ProsodyServer
from transports.base import CredentialsRejectedError, SessionConflictError

from .helpers import XNet, xmpp_test

#: how long the two sessions are watched for a reconnect fight (seconds)
WATCH = 10.0


@xmpp_test
async def test_a_second_session_of_the_same_full_jid_stops_the_first_without_a_fight(
        prosody: ProsodyServer, tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    try:
        (alice,) = await net.add("alice")
        first = net.transports["alice"]
        seen: list[ClientEvent] = []

        async def handler(event: ClientEvent) -> None:
            seen.append(event)

        runner = asyncio.create_task(alice.run(handler))
        await asyncio.sleep(0.5)
        second = await net.transport("alice")  # same full JID: Prosody kicks the old one
        try:
            started = time.monotonic()
            with pytest.raises(SessionConflictError,
                               match=f"another session is using {first.client_id}"):
                await asyncio.wait_for(runner, 15)  # run() ends with the error, once
            await asyncio.sleep(max(0.0, WATCH - (time.monotonic() - started)))
            # no ping-pong: the replaced session never came back, the new one was
            # never kicked out
            assert first.sessions == 1 and first.reconnect_attempts == 0
            assert second.sessions == 1 and second.reconnect_attempts == 0
            assert not any(isinstance(e, ConnectionLost) for e in seen)
            with pytest.raises(SessionConflictError):
                await first.fetch(first.client_id)
            assert second.client_id == first.client_id
            assert isinstance(await second.fetch(second.client_id), list)
        finally:
            await second.close()
    finally:
        await net.close()


@xmpp_test
async def test_a_password_refused_on_reconnect_ends_run_with_a_clear_error(
        prosody: ProsodyServer, tmp_path: Path) -> None:
    """The account's password changed while the device ran; after a server restart its
    reconnection is refused: run() raises CredentialsRejectedError once, and the
    transport stops trying instead of reconnecting with the old password for ever."""
    net = XNet(prosody, tmp_path)
    try:
        (alice,) = await net.add("alice")
        transport = net.transports["alice"]
        runner = asyncio.create_task(alice.run())
        await asyncio.sleep(0.5)
        account = net.jid("alice").split("/")[0]
        await asyncio.to_thread(_set_password, prosody, account, "a-new-password")
        await asyncio.to_thread(prosody.restart)
        with pytest.raises(CredentialsRejectedError, match="no longer accepts the password"):
            await asyncio.wait_for(runner, 60)
        tried = transport.reconnect_attempts
        assert tried >= 1
        await asyncio.sleep(5.0)
        assert transport.reconnect_attempts == tried  # it stopped trying
        with pytest.raises(CredentialsRejectedError):
            await transport.fetch(transport.client_id)
    finally:
        await net.close()


def _set_password(server: ProsodyServer, account: str, password: str) -> None:
    """Replace the account by one with ``password`` (``prosodyctl passwd`` only reads a
    terminal)."""
    user, domain = account.split("@")
    env = {**os.environ, "HOME": str(server.root)}
    subprocess.run(["prosodyctl", "--config", str(server.config_path), "deluser", account],
                   check=True, capture_output=True, timeout=30, env=env)
    subprocess.run(["prosodyctl", "--config", str(server.config_path), "register", user,
                    domain, password], check=True, capture_output=True, timeout=30, env=env)
