"""A verb of the `insid3` command as an in-process function, for tests: `verb("eval", "speed")(argv)`."""

from __future__ import annotations

from collections.abc import Callable

from insid3.engine.cli.main import run_command


def verb(*words: str) -> Callable[[list[str]], int]:
    """`insid3 WORDS... ARGV` run in this process: its exit code (the runner's one-line errors included)."""

    def command(argv: list[str]) -> int:
        return run_command(f"insid3 {words[0]}", words[0], [*words[1:], *argv])  # the sub-verb adds its name

    return command


def last_line(capsys) -> str:
    """The last line a command wrote to stderr (what it says last: its summary or its one-line
    error), checked not to follow a traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]
