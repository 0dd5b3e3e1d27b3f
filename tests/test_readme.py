"""README.md stays true: its Python example runs and its first commands are what CI runs."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

from pydantic import BaseModel

from mls_cli.main import build_parser
from mls_client.settings import Settings
from mls_core.events import ApplicationMessage

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs() -> None:
    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None
    namespace: dict[str, object] = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)
    event = namespace["event"]
    assert isinstance(event, ApplicationMessage) and event.data == b"hi"


def test_ci_runs_the_readme_test_command() -> None:
    text = (ROOT / "README.md").read_text()
    commands = re.findall(r"```sh\n(.*?)\n```", text, re.S)
    assert len(commands) >= 2
    assert commands[1].strip() in (ROOT / ".ci" / "run").read_text()


def test_ci_runs_the_readme_main_command() -> None:
    text = (ROOT / "README.md").read_text()
    commands = re.findall(r"```sh\n(.*?)\n```", text, re.S)
    assert "mls-bridge demo" in commands[0]
    assert commands[0].strip() in (ROOT / ".ci" / "run").read_text()


def _sh_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [line for block in re.findall(r"```sh\n(.*?)\n```", text, re.S)
            for line in block.splitlines()]


def test_every_mls_bridge_command_in_the_readme_parses() -> None:
    commands = [shlex.split(line, comments=True)[1:] for line in _sh_lines()
                if line.startswith(".venv/bin/mls-bridge ")]
    assert len(commands) >= 15
    parser = build_parser()
    for argv in commands:
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            raise AssertionError(f"README: mls-bridge {' '.join(argv)} does not parse") \
                from None
        assert args.command in argv


def test_the_first_chat_settings_are_valid() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## First chat in five minutes", 1)[1].split("\n## ", 1)[0]
    tables = re.findall(r"```toml\n(.*?)```", section, re.S)
    kinds = [Settings.model_validate(tomllib.loads(t)).transport.kind for t in tables]
    assert kinds == ["xmpp", "matrix"]
    assert "allow_plaintext" in section


def test_the_readme_runs_scripts_as_the_venv_installs_them() -> None:
    for line in _sh_lines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "python":
            raise AssertionError(f"README: {line!r} needs the project's venv: "
                                 ".venv/bin/python")
        for word in words:
            if word.startswith("examples/"):
                assert (ROOT / word).is_file(), word


def test_the_settings_reference_lists_every_table_and_its_example_is_valid() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Settings\n", 1)[1].split("\n## ", 1)[0]
    tables = {name for name, info in Settings.model_fields.items()
              if isinstance(info.default, BaseModel) or name in ("xmpp", "matrix")}
    assert tables == {"transport", "key_packages", "windows", "trust", "attachments",
                      "limits", "xmpp", "matrix"}
    assert all(f"`[{name}]`" in section for name in tables)
    [example] = re.findall(r"```toml\n(.*?)```", section, re.S)
    limits = Settings.model_validate(tomllib.loads(example)).group_config().limits
    assert limits.max_tree_bytes == 16 << 20 and limits.max_message_bytes == 17 << 20
