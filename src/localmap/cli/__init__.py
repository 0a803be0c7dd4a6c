"""The ``localmap`` command line: every command, its options, progress and terminal output.

The model packages return plain data; this package turns it into a command line. Each command is
one module here exposing ``register(subparsers)``, which adds its parser with
:func:`localmap.cli.common.add_command` and sets ``func`` to a callable taking the parsed
namespace and returning an exit status. Modules are imported when the parser is built, so a
command that fails to import is an error, never a silently missing command. Every
:class:`~localmap.errors.LocalmapError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import importlib
import sys

from localmap import __version__
from localmap.cli.common import global_options, Parser
from localmap.errors import LocalmapError

# the commands in the order ``localmap --help`` lists them
COMMANDS: list[str] = [
    "localmap.cli.evaluate",
    "localmap.cli.replay",
    "localmap.cli.overhead",
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
    except LocalmapError as exc:
        print(f"localmap: {exc.one_line()}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("localmap: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
