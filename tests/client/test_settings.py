"""Settings: defaults, TOML file, MLS_BRIDGE_* variables, readable validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mls_client.errors import ConfigError
from mls_client.settings import Settings
from mls_core.config import InputLimits
from mls_core.framing import WireFormat


def test_defaults() -> None:
    s = Settings.load(env={})
    assert s.cipher_suite == 1 and s.key_packages.pool_size == 20
    assert s.transport.kind == "local"
    assert s.delivery_db_path == s.state_dir / "delivery.sqlite"
    cfg = s.group_config()
    assert cfg.max_past_epochs == 2 and cfg.handshake_wire_format == WireFormat.MLS_PRIVATE_MESSAGE
    assert cfg.accept_removed_senders is False  # issue 16: refused by default


def test_toml_then_environment_then_overrides(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('state_dir = "/tmp/x"\ncipher_suite = 3\nhandshake_wire_format = "public"\n'
                    '[key_packages]\npool_size = 30\nthreshold = 10\n'
                    '[windows]\nmax_past_epochs = 5\naccept_removed_senders = true\n'
                    '[transport]\ndb_path = "/tmp/ds.sqlite"\n')
    s = Settings.load(toml, env={"MLS_BRIDGE_KEY_PACKAGES__POOL_SIZE": "40",
                                 "MLS_BRIDGE_WINDOWS__MAX_RETAINED_KEYS": "7",
                                 "UNRELATED": "1"},
                      overrides={"state_dir": tmp_path / "cli"})
    assert s.cipher_suite == 3
    assert s.key_packages.pool_size == 40 and s.key_packages.threshold == 10
    assert s.windows.max_past_epochs == 5 and s.windows.max_retained_keys == 7
    assert s.state_dir == tmp_path / "cli"
    assert s.delivery_db_path == Path("/tmp/ds.sqlite")
    cfg = s.group_config()
    assert cfg.max_retained_keys == 7 and cfg.handshake_wire_format == WireFormat.MLS_PUBLIC_MESSAGE
    assert cfg.accept_removed_senders is True


def test_config_file_from_environment(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("commit_retries = 9\n")
    assert Settings.load(env={"MLS_BRIDGE_CONFIG": str(toml)}).commit_retries == 9


def test_errors_name_field_and_source(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("cipher_suite = 99\n[key_packages]\npool_size = 0\n")
    with pytest.raises(ConfigError) as err:
        Settings.load(toml, env={"MLS_BRIDGE_WINDOWS__MAX_PAST_EPOCHS": "many"})
    text = str(err.value)
    assert "cipher_suite: unsupported cipher suite 99 (supported: 1, 2, 3" in text
    assert f"(from {toml})" in text
    assert "key_packages.pool_size: Input should be greater than or equal to 1" in text
    assert "windows.max_past_epochs" in text and "MLS_BRIDGE_WINDOWS__MAX_PAST_EPOCHS" in text


def test_unknown_setting_and_cross_field_rule() -> None:
    with pytest.raises(ConfigError, match="pool_sise: unknown setting"):
        Settings.load(env={"MLS_BRIDGE_KEY_PACKAGES__POOL_SISE": "3"})
    with pytest.raises(ConfigError, match="threshold must not exceed pool_size"):
        Settings.load(env={"MLS_BRIDGE_KEY_PACKAGES__POOL_SIZE": "3",
                           "MLS_BRIDGE_KEY_PACKAGES__THRESHOLD": "4"})
    with pytest.raises(ConfigError, match=r"transport\.kind"):
        Settings.load(env={"MLS_BRIDGE_TRANSPORT__KIND": "carrier-pigeon"})


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read settings file"):
        Settings.load(tmp_path / "missing.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("pool_size = [\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        Settings.load(bad, env={})


_XMPP = {"MLS_BRIDGE_TRANSPORT__KIND": "xmpp", "MLS_BRIDGE_XMPP__JID": "a@example.org",
         "MLS_BRIDGE_XMPP__PASSWORD": "pw"}


def test_limits_default_to_input_limits() -> None:
    s = Settings.load(env={})
    assert s.limits.input_limits() == InputLimits() == s.group_config().limits
    # unset byte bounds follow the group's suite (45 x suite 1's for ML-DSA-87)
    from mls_core.ciphersuite import enable_experimental_pq, get_suite

    enable_experimental_pq()
    limits = s.group_config().limits
    assert limits.tree_bytes(get_suite(85)) == 45 * limits.tree_bytes(get_suite(1)) == 45 << 22


def test_limits_from_toml_and_environment_reach_groups_and_transport(tmp_path: Path) -> None:
    """Issue 16: one ``[limits]`` section bounds joins (GroupConfig.limits) and the
    GroupInfos the transport reads (its settings' ``limits``)."""
    toml = tmp_path / "c.toml"
    toml.write_text("[limits]\nmax_tree_leaves = 131072\nmax_tree_bytes = 16777216\n"
                    "max_message_bytes = 17825792\n"
                    '[matrix]\nhomeserver = "http://127.0.0.1:8008"\n'
                    'user_id = "@a:example.org"\npassword = "pw"\n')
    s = Settings.load(toml, env={**_XMPP, "MLS_BRIDGE_LIMITS__MAX_MESSAGE_BYTES": "33554432"})
    want = InputLimits(max_tree_leaves=131072, max_tree_bytes=16 << 20,
                       max_message_bytes=32 << 20)
    assert s.group_config().limits == want
    assert s.xmpp is not None and s.xmpp.limits == want
    assert s.matrix is not None and s.matrix.limits == want
    # a copy (transport_factory.with_xmpp_device) and a round trip keep them
    assert Settings.model_validate(s.model_dump()).xmpp.limits == want  # type: ignore[union-attr]
    xmpp = s.xmpp.model_copy(update={"device": "d"})
    assert s.model_copy(update={"xmpp": xmpp}).xmpp.limits == want  # type: ignore[union-attr]


@pytest.mark.parametrize(("env", "message"), [
    ({"MLS_BRIDGE_LIMITS__MAX_TREE_LEAVES": "0"},
     "limits.max_tree_leaves: Input should be greater than or equal to 1 "
     "(from MLS_BRIDGE_LIMITS__MAX_TREE_LEAVES)"),
    ({"MLS_BRIDGE_LIMITS__MAX_TREE_BYTES": "lots"}, "limits.max_tree_bytes: Input should be "
                                                    "a valid integer"),
    ({"MLS_BRIDGE_LIMITS__MAX_TREE_BYTES": "8388608",
      "MLS_BRIDGE_LIMITS__MAX_MESSAGE_BYTES": "4194304"},
     "limits: max_message_bytes must be at least max_tree_bytes"),
    ({"MLS_BRIDGE_LIMITS__MAX_LEAVES": "9"}, "limits.max_leaves: unknown setting"),
    ({**_XMPP, "MLS_BRIDGE_XMPP__LIMITS__MAX_TREE_LEAVES": "9"},
     "xmpp: set the bounds in the [limits] section, not in this table"),
    ({**_XMPP, "MLS_BRIDGE_XMPP__LIMITS__MAX_TREE_LEAVES": "-1"},
     "xmpp.limits: InputLimits.max_tree_leaves must be a positive int, not -1"),
])
def test_invalid_limits_are_config_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.load(env=env)
    assert message in str(err.value)


def test_a_transport_table_may_repeat_the_limits_section() -> None:
    s = Settings.model_validate({"limits": {"max_tree_leaves": 9}, "xmpp": {
        "jid": "a@example.org", "password": "pw", "limits": {"max_tree_leaves": 9}}})
    assert s.xmpp is not None and s.xmpp.limits.max_tree_leaves == 9


def test_ca_file_of_the_network_table_in_use(tmp_path: Path) -> None:
    """``ca_file`` of ``[xmpp]`` / ``[matrix]`` (``~`` expanded) is the one attachment
    downloads trust besides the system's CAs; the local transport has none."""
    toml = tmp_path / "c.toml"
    toml.write_text('[transport]\nkind = "matrix"\n[matrix]\nhomeserver = "https://m.example"\n'
                    'user_id = "@a:m.example"\npassword = "p"\nca_file = "~/ca.pem"\n'
                    '[xmpp]\njid = "a@x.example"\npassword = "p"\nca_file = "/x/ca.pem"\n')
    s = Settings.load(toml, env={})
    assert s.ca_file == s.matrix.ca_file == Path("~/ca.pem").expanduser()  # type: ignore[union-attr]
    assert Settings.load(toml, env={"MLS_BRIDGE_TRANSPORT__KIND": "xmpp"}).ca_file == Path(
        "/x/ca.pem")
    assert Settings.load(env={}).ca_file is None
