"""The one runner every verb goes through: parse, run, and turn what can go wrong into one line.

    Insid3Error (bad input, a usage error)  -> "PROG: error: ..."                exit 2
    OSError (a full disk, no permission)    -> "PROG: error: FILE: why"          exit 2
    Ctrl-C (KeyboardInterrupt), anywhere    -> "PROG: interrupted"              exit 130
    anything else (a bug)                   -> "PROG: internal error ...; run with --debug for the traceback"  exit 1

A verb is anything with `configure(parser)` and `run(args, prog) -> int` (a module or an object),
named in the verb table (engine/cli/main.py) as "module:attribute" or "module" and imported only
when it runs: this module imports nothing heavy, so Ctrl-C during the imports is caught too.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import argparse

    from insid3.engine.jobs.segment import JobCounts

EXIT_ERROR = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130


class Verb(Protocol):
    """What a verb is: its flags, and what it does with them (an exit code). `prog` is the name the
    user typed ("insid3 segment", or the alias "insid3-segment"), for the lines the verb prints;
    `args.command_line` the whole command as typed, for reports that record it."""

    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace, prog: str) -> int: ...


@dataclass(frozen=True)
class Command:
    """A verb as a value, for modules that hold several (engine/cli/bench.py)."""

    description: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, str], int]


def load_verb(target: str) -> Verb:
    """A verb from "package.module" or "package.module:attribute"."""
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module  # type: ignore[return-value]


def description_of(verb: Verb) -> str | None:
    """The verb's `description`, else its docstring (the module's or the object's)."""
    text = getattr(verb, "description", None) or getattr(verb, "__doc__", None)
    return text.strip() if text else None


def verb_available(target: str) -> bool:
    """Whether the verb's module is installed (a verb another version adds may be missing)."""
    import importlib.util

    return importlib.util.find_spec(target.partition(":")[0]) is not None


def run_verb(prog: str, target: str, argv: list[str], *,
             epilog: str | None = None) -> tuple[int, argparse.Namespace | None]:
    """Parse `argv` with the verb's flags and run it; (exit code, the parsed flags or None)."""
    debug = "--debug" in argv[: argv.index("--")] if "--" in argv else "--debug" in argv
    args = None
    try:
        from insid3.engine.cli.arguments import new_parser

        verb = load_verb(target)
        if not hasattr(verb, "configure"):  # a command not yet written as a verb: its own main(argv)
            return verb.main(argv), None
        parser = new_parser(prog, description_of(verb), epilog)
        verb.configure(parser)
        args = parser.parse_args(argv)
        args.command_line = " ".join([prog, *argv])  # what was typed, for reports that record it
        return verb.run(args, prog), args
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED, args
    except SystemExit as exc:  # --help, --version; a library's sys.exit(message)
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0, None
        print(f"{prog}: error: {exc.code}", file=sys.stderr)
        return EXIT_ERROR, None
    except Exception as exc:  # noqa: BLE001 - every exception ends in one line
        return report_exception(prog, exc, debug), args


def report_exception(prog: str, exc: Exception, debug: bool) -> int:
    from insid3.errors import Insid3Error

    if isinstance(exc, Insid3Error):
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if debug:
        import traceback

        traceback.print_exception(exc)
    if isinstance(exc, OSError) and exc.strerror:  # the machine's answer, not a bug: a full disk, a folder it
        where = f"{exc.filename}: " if exc.filename else ""  # may not write, a port in use
        print(f"{prog}: error: {where}{exc.strerror}", file=sys.stderr)
        return EXIT_ERROR
    where = "" if debug else "; run with --debug for the traceback"
    print(f"{prog}: internal error (a bug, please report it): {type(exc).__name__}: {exc}{where}", file=sys.stderr)
    return EXIT_BUG


def job_summary(prog: str, counts: JobCounts, done_as: str, out: object) -> int:
    """A batch job's last lines (segment, match) and its exit code: 130 when interrupted (what is
    done is kept), 1 when a target failed, else 0."""
    if counts.interrupted:
        print(f"{prog}: interrupted: {counts.done} {done_as}, {counts.skipped} already done, kept in {counts.out}; "
              "run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    for target, why in counts.failures:
        print(f"{prog}: skipped {target}: {why}", file=sys.stderr)
    print(f"{prog}: {counts.done} {done_as}, {counts.skipped} already done, {len(counts.failures)} failed -> {out}",
          file=sys.stderr)
    return 1 if counts.failures else 0
