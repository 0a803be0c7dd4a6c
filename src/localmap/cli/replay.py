"""``localmap replay BUNDLE|TRACE``: the allocator replay as a command (see
:mod:`localmap.analysis.replay` for what it does and how; the tables are in :mod:`.replay_view`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from localmap.cli.common import add_command, count, progress
from localmap.errors import LocalmapError
from localmap.ingest.bundle import Bundle, load_bundle


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "replay", help="replay a percpu trace through the allocator model and score it",
        description="Rebuild the first chunk from the dmesg line and config, reconstruct what "
        "was allocated before tracing, then replay every percpu event, predicting each "
        "allocation's (chunk, offset) before applying the kernel's answer.")
    p.add_argument("source", help="bundle folder, or a trace file (plain, .gz, .xz)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--decisions", metavar="FILE",
                   help="write the model's prediction for every percpu_alloc_percpu event: "
                   "index<TAB>base_addr<TAB>off")
    p.add_argument("--dmesg", metavar="FILE", help="kernel log holding the first-chunk line "
                   "(default: the bundle's dmesg)")
    p.add_argument("--config", metavar="FILE", help="kernel .config (default: the bundle's)")
    p.add_argument("--possible-cpus", metavar="LIST|N",
                   help="the kernel's possible CPUs, as a list like 0-3 or a count "
                   "(default: the bundle's)")
    p.add_argument("--show", type=count, default=10, metavar="N",
                   help="disagreements to list in the terminal report (default 10)")
    p.set_defaults(func=run)


def open_source(source: str, dmesg: str | None = None, config: str | None = None,
                cpus: str | None = None) -> Bundle:
    """A bundle from a folder or a trace file, with files given on the command line added."""
    path = Path(source)
    if path.is_file() and any((path.parent / n).exists() for n in ("dmesg", "dmesg.gz",
                                                                    "dmesg.xz")):
        bundle = load_bundle(path.parent, trace=path)    # a trace beside its bundle files
    else:
        bundle = load_bundle(path)
    for name, value in (("dmesg", dmesg), ("config", config)):
        if value is not None:
            if not Path(value).is_file():
                raise LocalmapError("no such file", value)
            bundle.files[name] = Path(value)
    if cpus is not None:
        from localmap.ingest.procfs import parse_cpulist
        lst = list(range(int(cpus))) if cpus.isdigit() else parse_cpulist(cpus, "--possible-cpus")
        if not lst:
            raise LocalmapError("--possible-cpus needs at least one CPU")
        bundle.__dict__["cpus"] = {"possible": lst, "online": lst}
    return bundle


def run(args: argparse.Namespace) -> int:
    from localmap.analysis.replay import replay
    bundle = open_source(args.source, args.dmesg, args.config, args.possible_cpus)
    with progress(args) as prog:
        res = replay(bundle, progress=prog)
    if args.decisions:
        try:
            res.write_decisions(args.decisions)
        except OSError as exc:
            raise LocalmapError(f"cannot write: {exc.strerror}", args.decisions) from None
    if args.json:
        json.dump(res.as_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        from localmap.cli.replay_view import print_replay
        print_replay(res, show=args.show)
    return 0
