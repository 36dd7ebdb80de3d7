"""Every ``medcl ...`` command shown in README's shell blocks exists and its ``--help`` works."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from medcl.cli import build_parser, main

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_commands() -> list[list[str]]:
    text = README.read_text()
    blocks = re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", text, flags=re.S)
    commands = []
    for block in blocks:
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.strip().removeprefix("$ ")
            for part in re.split(r"&&|\|", line):
                words = shlex.split(part.strip(), comments=True)
                if words and words[0] in ("medcl", ".venv/bin/medcl"):
                    commands.append(words[1:])
    return commands


def command_path(words: list[str]) -> list[str]:
    """The group/subcommand words of a command line (before options and arguments)."""
    parser = build_parser()
    path: list[str] = []
    for word in words:
        if word.startswith("-"):
            break
        actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not actions or word not in actions[0].choices:
            break
        parser = actions[0].choices[word]
        path.append(word)
    return path


COMMANDS = readme_commands()


def test_readme_shows_many_commands() -> None:
    groups = {c[0] for c in COMMANDS if c}
    assert {"sepclr", "zones", "ecg", "data", "bench", "demo", "config"} <= groups, groups


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(c[:3]) for c in COMMANDS])
def test_readme_command_exists(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    if words[:1] in (["--version"], ["--help"]):
        return
    path = command_path(words)
    assert path, f"medcl {' '.join(words)}: unknown command"
    with pytest.raises(SystemExit) as exc:
        main([*path, "--help"])
    assert exc.value.code == 0
    assert "usage: medcl" in capsys.readouterr().out
