"""Command-line conventions: --version, global options, one meaning per option name, plain help
text, output width from the terminal or COLUMNS, one progress policy."""

from __future__ import annotations

import argparse
import importlib.metadata
import re

import pytest

import localmap
from localmap.cli import build_parser, main
from localmap.cli.common import info, progress
from localmap.cli.console import PIPE_WIDTH, stdout_console


def _subparsers(parser: argparse.ArgumentParser, prefix: str = ""):
    """(name, parser) of every command and sub-command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + name, sub
                yield from _subparsers(sub, prefix + name + " ")


COMMANDS = dict(_subparsers(build_parser()))


def test_version_is_the_package_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"localmap {localmap.__version__}"
    assert importlib.metadata.version("localmap") == localmap.__version__


def test_every_command_is_listed():
    assert set(COMMANDS) == {"evaluate", "replay", "overhead", "fleet", "check", "sites", "predict",
                             "capture", "lab", "lab capture", "lab kernel", "lab profile",
                             "lab prototype"}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_is_plain_words(name):
    text = COMMANDS[name].format_help()
    for bad in ("``", "`", ":mod:", ":func:", ".py", "localmap/", "issue", "DESIGN.md"):
        assert bad not in text, f"{name} --help shows {bad!r}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_global_options_on_every_command(name):
    opts = {o for a in COMMANDS[name]._actions for o in a.option_strings}
    assert {"--no-progress", "--quiet", "-q"} <= opts


def test_global_options_before_or_after_the_command(capsys):
    assert main(["--no-progress", "check", "--list"]) == 0
    assert main(["check", "--list", "--quiet"]) == 0
    assert "naive-no-preempt" in capsys.readouterr().out
    ns = build_parser().parse_args(["-q", "check"])
    assert ns.quiet is True and ns.no_progress is False
    ns = build_parser().parse_args(["check", "--no-progress"])
    assert ns.no_progress is True and ns.quiet is False


def test_one_meaning_per_option_name():
    """An option name means one thing: its help text is the same wherever it appears, up to the
    command's own noun (machine/guest/configuration) for --cpus."""
    helps: dict[str, set[str]] = {}
    for name, p in COMMANDS.items():
        for a in p._actions:
            for o in a.option_strings:
                helps.setdefault(o, set()).add((a.help or "").split(" (")[0])
    for opt in ("--cpus",):
        assert all(h.startswith("number of CPUs of") for h in helps[opt]), helps[opt]
    for opt in ("--json",):
        assert helps[opt] == {"print the result as JSON"}, helps[opt]
    assert "--cpus" not in {o for a in COMMANDS["replay"]._actions for o in a.option_strings}


def test_width_from_columns_else_terminal_else_pipe_default(monkeypatch):
    monkeypatch.setenv("COLUMNS", "97")
    assert stdout_console().width == 97
    monkeypatch.delenv("COLUMNS")
    assert stdout_console().width == PIPE_WIDTH          # stdout is not a terminal under pytest


def test_progress_policy_and_quiet(capsys):
    ns = argparse.Namespace(no_progress=False, quiet=False)
    assert progress(ns).enabled is False                   # stderr is not a terminal here
    ns.quiet = True
    info(ns, "hidden")
    ns.quiet = False
    info(ns, "shown")
    assert capsys.readouterr().out == "shown\n"


def test_argument_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["replay", "x", "--show", "-1"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.match(r"localmap: replay: argument --show", err)


def test_numbers_are_checked_by_the_shared_option_types():
    """No option takes a bare int or float (which accept -1, nan, inf): each uses one of the
    shared checking types, so a bad number is refused before the command runs."""
    bare = sorted(f"{name} {a.option_strings[0]}" for name, p in COMMANDS.items()
                  for a in p._actions if a.option_strings and a.type in (int, float))
    assert bare == []


@pytest.mark.parametrize("argv,option", [
    (["lab", "prototype", "--check-series", "--timeout", "inf"], "--timeout"),
    (["lab", "prototype", "--check-series", "--stress-ms", "0"], "--stress-ms"),
    (["lab", "prototype", "--check-series", "--cycles", "-1"], "--cycles"),
    (["overhead", "--text-replication", "--nodes", "0"], "--nodes"),
])
def test_a_bad_number_is_one_line_naming_its_option(argv, option, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and option in err[0]
