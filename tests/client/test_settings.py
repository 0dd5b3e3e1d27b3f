"""Settings: defaults, TOML file, MLS_BRIDGE_* variables, readable validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mls_client.errors import ConfigError
from mls_client.settings import Settings
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
