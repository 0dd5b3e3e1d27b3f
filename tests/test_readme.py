"""README.md stays true: its Python example runs and its first commands are what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

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
