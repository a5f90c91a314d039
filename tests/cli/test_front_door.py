"""`insid3 <verb>`: every verb and sub-verb answers --help with its defaults, the old command names
are aliases with the same flags, and the one runner turns what can go wrong into one line."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from insid3.engine.cli import main as front
from insid3.engine.cli import runner
from insid3.engine.cli.arguments import new_parser
from insid3.engine.cli.runner import Command
from insid3.errors import Insid3Error

BIN = Path(sys.executable).parent
ALIASES = ("export", "segment", "match", "serve", "eval", "bench", "demo")


def every_verb() -> list[list[str]]:
    """["segment"], ["bench", "kernels"], ...: each verb and each sub-verb, as typed."""
    found = []
    for name, entry in front.VERBS.items():
        found.append([name])
        found += [[name, sub] for sub in entry.subverbs]
    return found


def parser_of(words: list[str]) -> argparse.ArgumentParser:
    entry = front.VERBS[words[0]]
    if len(words) > 1:
        entry = entry.subverbs[words[1]]
    verb = runner.load_verb(entry.target)
    parser = new_parser("insid3 " + " ".join(words), runner.description_of(verb))
    verb.configure(parser)
    return parser


def available(words: list[str]) -> bool:
    entry = front.VERBS[words[0]] if len(words) == 1 else front.VERBS[words[0]].subverbs[words[1]]
    return runner.verb_available(entry.target)


@pytest.mark.parametrize("words", every_verb(), ids=" ".join)
def test_every_verb_answers_help_with_its_usage(words, capsys):
    if not available(words):
        assert front.main([*words, "--help"]) == 2
        assert capsys.readouterr().err.strip() == f"insid3 {' '.join(words)}: not available in this version"
        return
    assert front.main([*words, "--help"]) == 0
    out = capsys.readouterr().out
    entry = front.VERBS[words[0]] if len(words) == 1 else front.VERBS[words[0]].subverbs[words[1]]
    if not hasattr(runner.load_verb(entry.target), "configure"):  # a command not yet written as a verb
        assert out.startswith("usage: ")
        return
    assert out.startswith(f"usage: insid3 {' '.join(words)} ") and "--debug" in out


@pytest.mark.parametrize("words", [w for w in every_verb() if available(w)], ids=" ".join)
def test_help_states_each_default_once_and_never_none(words):
    entry = front.VERBS[words[0]] if len(words) == 1 else front.VERBS[words[0]].subverbs[words[1]]
    if not hasattr(runner.load_verb(entry.target), "configure"):
        pytest.skip(f"{entry.target} is not yet written as a verb (its own main)")
    parser = parser_of(words)
    formatter = parser._get_formatter()
    for action in parser._actions:
        text = formatter._get_help_string(action) if action.help else ""
        assert "(default: None)" not in text, (words, action.option_strings)
        assert text.count("(default:") <= 1 and text.lower().count("default") <= 2, (words, text)
        if action.required:
            assert "(default:" not in text, (words, action.option_strings)
    help_text = " ".join(parser.format_help().split())
    assert "(default: None)" not in help_text and "(default: )" not in help_text


def test_the_top_level_help_lists_every_verb_on_one_screen(capsys):
    assert front.main(["--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) <= 30 and max(map(len, lines)) <= 140
    for name, entry in front.VERBS.items():
        assert sum(line.startswith(f"  {name} ") for line in lines) == 1, name
        assert any(entry.summary in line for line in lines)
    assert front.main([]) == 2  # no verb: the same help, on stderr
    assert "verbs:" in capsys.readouterr().err


def test_debug_before_the_verb_is_the_verbs_flag(monkeypatch, capsys):
    monkeypatch.setitem(front.VERBS, "fake", front.Entry("insid3.engine.cli.runner:Command", "a fake verb"))
    monkeypatch.setattr(runner, "load_verb", lambda target: Command("fake", lambda parser: None, raising(OSError())))
    assert front.main(["--debug", "fake"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_an_unknown_verb_is_one_line(capsys):
    assert front.main(["segmnet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("insid3: error: unknown verb 'segmnet'")


def test_the_backend_choices_come_from_the_registry(monkeypatch, capsys):
    from insid3.engine.runtime import backends

    parser = parser_of(["segment"])
    choices = next(a.choices for a in parser._actions if a.dest == "backend")
    assert list(choices) == ["auto", *backends.BACKENDS] and "torch-cuda" in choices
    monkeypatch.setitem(backends.BACKENDS, "made-up", backends.BACKENDS["torch"])
    assert "made-up" in next(a.choices for a in parser_of(["match"])._actions if a.dest == "backend")
    assert front.main(["segment", "--help"]) == 0
    assert "made-up" in capsys.readouterr().out
    assert front.main(["segment", "--backend", "nosuch", "--bundle", "b", "--out", "o", "t.png"]) == 2
    assert capsys.readouterr().err == ("insid3 segment: error: argument --backend: unknown backend 'nosuch': choose one "
                                       f"of auto, {', '.join(backends.BACKENDS)}\n")


def test_segment_has_the_hyperparameters_of_eval_and_match():
    for words in (["segment"], ["eval"], ["match"]):
        dests = {action.dest for action in parser_of(words)._actions}
        assert "svd_components" in dests, words
        if words != ["match"]:  # matching has no clustering
            assert {"tau", "merge_threshold"} <= dests, words


# --- the runner ------------------------------------------------------------------------------------


def run_fake(monkeypatch, action, *argv: str) -> int:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--flag", default="x", help="a flag")

    def run(args: argparse.Namespace, prog: str) -> int:
        return action()

    monkeypatch.setattr(runner, "load_verb", lambda target: Command("a fake verb", configure, run))
    return runner.run_verb("insid3 fake", "fake.module", list(argv))[0]


def raising(exc: BaseException):
    def action() -> int:
        raise exc
    return action


def test_an_insid3_error_is_one_line_and_exit_2(monkeypatch, capsys):
    assert run_fake(monkeypatch, raising(Insid3Error("the bundle is damaged"))) == 2
    assert capsys.readouterr().err == "insid3 fake: error: the bundle is damaged\n"


def test_a_usage_error_is_one_line_and_exit_2(monkeypatch, capsys):
    assert run_fake(monkeypatch, lambda: 0, "--nope") == 2
    assert capsys.readouterr().err == "insid3 fake: error: unrecognized arguments: --nope\n"


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    assert run_fake(monkeypatch, raising(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == "insid3 fake: interrupted\n"


def test_a_bug_is_one_line_naming_it_and_debug_shows_the_traceback(monkeypatch, capsys):
    assert run_fake(monkeypatch, raising(ZeroDivisionError("division by zero"))) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("insid3 fake: internal error (a bug") and "ZeroDivisionError: division by zero" in err
    assert err.rstrip().endswith("run with --debug for the traceback")
    assert run_fake(monkeypatch, raising(ZeroDivisionError("division by zero")), "--debug") == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and 'raise exc' in err
    assert err.splitlines()[-1].startswith("insid3 fake: internal error (a bug")


def test_an_os_error_is_the_machines_answer_in_one_line(monkeypatch, capsys):
    full = OSError(28, "No space left on device", "/full/disk/out.png")
    assert run_fake(monkeypatch, raising(full)) == 2
    assert capsys.readouterr().err == "insid3 fake: error: /full/disk/out.png: No space left on device\n"


def test_a_verb_that_is_not_installed_says_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setitem(front.VERBS, "future", front.Entry("insid3.engine.cli.no_such_verb", "not yet"))
    assert front.main(["future", "--anything"]) == 2
    assert capsys.readouterr().err == "insid3 future: not available in this version\n"


def test_ctrl_c_while_a_verb_imports_is_one_line_and_exit_130():
    """SIGINT while the verb's module is being imported (held there by an import hook that says when)."""
    code = textwrap.dedent("""
        import sys, time
        class Slow:
            def find_spec(self, name, path=None, target=None):
                if name == "insid3.engine.cli.segment":
                    print("importing", file=sys.stderr, flush=True)
                    time.sleep(60)
                return None
        sys.meta_path.insert(0, Slow())
        from insid3.engine.cli.main import main
        sys.exit(main(["segment", "--help"]))
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stderr.readline().strip() == "importing"
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=30) == 130
    assert rest == "insid3 segment: interrupted\n"


# --- the aliases -----------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ALIASES)
def test_each_old_command_is_an_alias_of_its_verb(verb):
    result = subprocess.run([str(BIN / f"insid3-{verb}"), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: insid3-{verb} ")
    verb_help = subprocess.run([str(BIN / "insid3"), verb, "--help"], capture_output=True, text=True, timeout=120)
    same = [text.replace(f"insid3 {verb}", "X").replace(f"insid3-{verb}", "X").split()
            for text in (verb_help.stdout, result.stdout)]
    assert same[0] == same[1]  # the same flags, defaults and words


def test_the_design_cards_export_line_still_parses():
    """`insid3-export --size large --res 1024` (the weights are another flag): parsed, then the
    missing source named in one line, before torch loads."""
    result = subprocess.run([str(BIN / "insid3-export"), "--size", "large", "--res", "1024"], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 2
    assert result.stderr == "insid3-export: error: give --weights PATH or --random-init\n"
