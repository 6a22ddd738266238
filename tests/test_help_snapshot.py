"""The CLI's help texts are part of its interface: ``latentatlas --help`` and every
``COMMAND --help`` equal the snapshots in tests/snapshots/help/ (taken before the CLI was split
into one module per command family). A deliberate change to a help text updates its snapshot
(``python tests/test_help_snapshot.py`` rewrites them)."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from latentatlas.cli.main import build_parser

SNAPSHOTS = Path(__file__).parent / "snapshots" / "help"


def _help(argv: list[str]) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
        build_parser().parse_args(argv)
    return buf.getvalue()


def _commands() -> list[str]:
    return sorted(p.stem for p in SNAPSHOTS.glob("*.txt") if p.stem != "latentatlas")


def test_every_command_has_a_snapshot():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert sorted(sub.choices) == _commands()


@pytest.mark.parametrize("command", [None, *_commands()])
def test_help_text_is_unchanged(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    argv = ["--help"] if command is None else [command, "--help"]
    want = (SNAPSHOTS / f"{command or 'latentatlas'}.txt").read_text()
    assert _help(argv) == want


if __name__ == "__main__":
    import os
    os.environ["COLUMNS"] = "100"
    for name in [None, *_commands()]:
        (SNAPSHOTS / f"{name or 'latentatlas'}.txt").write_text(_help(["--help"] if name is None else [name, "--help"]))
