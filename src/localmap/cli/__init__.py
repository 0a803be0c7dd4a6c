"""The ``localmap`` command line: every command, its options, progress and terminal output.

The model packages return plain data; this package turns it into a command line. Each command is
one module here exposing ``register(subparsers)``, which adds its parser with
:func:`localmap.cli.common.add_command` and sets ``func`` to a callable taking the parsed
namespace and returning an exit status. Modules are imported when the parser is built, so a
command that fails to import is an error, never a silently missing command.

Every failure of a command becomes one line on stderr and exit status 2, through the one
catch-all of :func:`main`: a :class:`~localmap.errors.LocalmapError` as its ``FILE[:LINE]:
message``, anything else (a bug, or an input a reader does not handle) as an internal error
naming the command's input; ``--debug`` also prints the traceback. The line is made safe for a
terminal (control characters escaped).
"""

from __future__ import annotations

import importlib
import sys
import traceback

from localmap import __version__
from localmap.cli.common import global_options, Parser
from localmap.errors import LocalmapError
from localmap.fileio import printable

# the commands in the order ``localmap --help`` lists them
COMMANDS: list[str] = [
    "localmap.cli.evaluate",
    "localmap.cli.replay",
    "localmap.cli.overhead",
    "localmap.cli.fleet",
    "localmap.cli.check",
    "localmap.cli.sites",
    "localmap.cli.predict",
    "localmap.cli.lab",
]


def build_parser() -> Parser:
    parser = Parser(
        prog="localmap",
        description="Percpu local mappings through per-CPU kernel page tables: model, replay, "
        "check and measure.",
        parents=[global_options(top=True)],
    )
    parser.add_argument("--version", action="version", version=f"localmap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("localmap: interrupted", file=sys.stderr)
        return 130
    except BaseException as exc:            # the one catch-all: one line, exit status 2
        if isinstance(exc, SystemExit):
            raise
        if getattr(args, "debug", False):
            traceback.print_exc()
        print("localmap: " + one_line(exc, args), file=sys.stderr)
        return 2


# the options naming what a command reads, in the order an unexpected error names them
_INPUTS = ("source", "bundle", "image", "profile")


def one_line(exc: BaseException, args=None) -> str:
    """The error line for ``exc`` (without the ``localmap:`` prefix), safe for a terminal:
    control characters are shown escaped, so it is always one line."""
    if isinstance(exc, LocalmapError):
        text = exc.one_line()
    elif isinstance(exc, MemoryError):
        text = (f"{_input(args)}out of memory (the input asks for more than this machine "
                "gives; this is a bug: localmap bounds what an input may ask for)")
    elif isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror or exc}"
    else:
        text = (f"{_input(args)}internal error: {type(exc).__name__}: {exc} (a bug in localmap "
                "or an input it does not handle; --debug shows where)")
    return printable(text, 2000)


def _input(args) -> str:
    for name in _INPUTS:
        v = getattr(args, name, None)
        if isinstance(v, str) and v:
            return v + ": "
    return ""


if __name__ == "__main__":
    sys.exit(main())
