"""MIMI content across the bridge (issue 18 "Done when"): on a real Prosody and Synapse
with the bridge as its own process, an XMPP member replies to, reacts to and edits (its
reply) a Matrix member's message, and the Matrix member sees each as such; a 5 MB file
sent from each network is received intact on the other (the URL is an ordinary HTTP URL
on the sender's own server); a tampered attachment is refused."""

from __future__ import annotations

from pathlib import Path

from devservers.prosody import ProsodyServer
from devservers.synapse import SynapseServer
from tests.integration.content import conversation, file_transfer

from .helpers import bridge_test, running

Servers = tuple[ProsodyServer, SynapseServer]


@bridge_test
async def test_mimi_content_and_attachments_across_the_bridge(bridge_servers: Servers,
                                                              tmp_path: Path) -> None:
    prosody, synapse = bridge_servers
    async with running(bridge_servers, tmp_path) as net:
        await net.add("matrix", "m1")
        await net.add("xmpp", "x1")
        gid = await net.group("m1", ["x1"])
        timings = await conversation(net, gid, "m1", "x1")
        timings |= {f"x->m {k}": v for k, v in (
            await file_transfer(net, gid, "x1", "m1", prosody.data_path)).items()}
        timings |= {f"m->x {k}": v for k, v in (
            await file_transfer(net, gid, "m1", "x1", synapse.data_dir / "media")).items()}
        print(f"\nbridge content timings: {timings}")
