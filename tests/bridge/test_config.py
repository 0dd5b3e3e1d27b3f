"""bridge.toml (bridge/config.py) and ``mls-bridge bridge`` on bad input."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bridge.config import BridgeConfig
from bridge.hub import Rule
from bridge.main import open_hub
from mls_cli.main import main
from mls_core.config import InputLimits
from transports.base import InvalidRequestError

GOOD = """\
state_dir = "{state}"
[xmpp]
jid = "bridge@example.org/relay"
password = "pw"
[matrix]
homeserver = "https://matrix.example.org"
user_id = "@bridge:example.org"
password = "pw"
[[pairs]]
xmpp_room = "mls-0a1b2c@conference.example.org"
matrix_room = "!abc:example.org"
"""


def test_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(GOOD.format(state=tmp_path / "state"))
    config = BridgeConfig.load(path)
    assert config.pairs[0].group_id == bytes.fromhex("0a1b2c")
    assert config.hub_path == tmp_path / "state" / "hub.sqlite"
    assert config.journal_path == tmp_path / "state" / "matrix-journal.sqlite"
    assert config.xmpp.bare_jid == "bridge@example.org"
    assert config.ordering is Rule.FIRST_VALID
    path.write_text(GOOD.replace('state_dir = "{state}"', 'state_dir = "{state}"\n'
                                 'ordering = "first_offered"').format(state=tmp_path))
    assert BridgeConfig.load(path).ordering is Rule.FIRST_OFFERED


def test_the_limits_section_bounds_the_hub_and_both_networks(tmp_path: Path) -> None:
    """Issue 16: ``[limits]`` of bridge.toml is the client's section; the network
    tables take it, the hub gets it (bridge/main.py)."""
    path = tmp_path / "bridge.toml"
    path.write_text(GOOD.replace("[xmpp]", "[limits]\nmax_tree_bytes = 16777216\n"
                                 "max_message_bytes = 17825792\n[xmpp]")
                    .format(state=tmp_path))
    config = BridgeConfig.load(path)
    want = InputLimits(max_tree_bytes=16 << 20, max_message_bytes=17 << 20)
    assert config.limits.input_limits() == want
    assert config.xmpp.limits == config.matrix.limits == want
    assert asyncio.run(_hub_limits(config)) == want
    path.write_text(GOOD.format(state=tmp_path))
    assert BridgeConfig.load(path).limits.input_limits() == InputLimits()


async def _hub_limits(config: BridgeConfig) -> InputLimits:
    hub = await open_hub(config, ("xmpp", "matrix"))
    try:
        return hub.limits
    finally:
        await hub.close()


@pytest.mark.parametrize("change, message", [
    (("mls-0a1b2c@conference", "general@conference"), "xmpp_room"),
    (("!abc:example.org", "abc"), "matrix_room"),
    (('password = "pw"\n[[pairs]]', 'password = "pw"\nunknown = 1\n[[pairs]]'), "unknown"),
    (("[xmpp]", "[xmpp\n"), "cannot read"),
    (('state_dir = "', 'ordering = "first"\nstate_dir = "'), "ordering"),
    (("[xmpp]", "[limits]\nmax_tree_leaves = 0\n[xmpp]"), "limits.max_tree_leaves"),
    (("[matrix]", "limits = { max_tree_leaves = 5 }\n[matrix]"), r"xmpp: .*\[limits\]"),
])
def test_bad_files_are_refused_with_the_place(tmp_path: Path, change: tuple[str, str],
                                              message: str) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(GOOD.format(state=tmp_path).replace(*change))
    with pytest.raises(InvalidRequestError, match=message):
        BridgeConfig.load(path)


def test_the_cli_reports_a_bad_config_in_one_line(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bridge", "--config", str(tmp_path / "missing.toml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mls-bridge: error: cannot read") and err.count("\n") == 1
