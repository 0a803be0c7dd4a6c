"""``localmap lab prototype``: the design's kernel patch series built, booted and checked.

Thin glue over :mod:`localmap.lab.prototype` (the model's side of the comparison is in that
module; the site analysis that predicts the instructions removed is
:func:`localmap.perf.dynamic.measured_profile`, joined here because ``lab`` and ``perf`` do not
import each other).
"""

from __future__ import annotations

import json
import sys

from localmap.cli.common import add_command, progress
from localmap.cli.console import stdout_console


def register(labsub) -> None:
    from localmap.lab.prototype import SERIES_VERSION

    pp = add_command(labsub, "prototype", help="build, boot and check the design's kernel patch "
                     "series (kernel/) against the model",
                     description=f"Apply the patch series of kernel/ to Linux {SERIES_VERSION} "
                     "(any other source is refused), build it and the unpatched kernel with the "
                     "same config (cached), boot both under QEMU on each CPU count, run the "
                     "built-in self-check, its stress, CPU hotplug cycles and the memcg and fork "
                     "workloads, compare the per-CPU page-table pages walked in the running "
                     "kernel with the model's for the same chunks, and count kernel instructions "
                     "per workload operation before and after.")
    pp.add_argument("--cpus", default="1,2,4,8", metavar="LIST",
                    help="comma-separated CPU counts of the guests (default 1,2,4,8)")
    pp.add_argument("--no-build", action="store_true",
                    help="fail instead of building a kernel that is not cached")
    pp.add_argument("--build-only", action="store_true",
                    help="only check the series and build (or find) both kernels")
    pp.add_argument("--check-series", action="store_true",
                    help="only check the source version and that the series applies")
    pp.add_argument("--no-profile", action="store_true",
                    help="skip the instructions-per-operation profiles")
    pp.add_argument("--no-extra", action="store_true",
                    help="skip the extra boots of the patched kernel (-cpu cortex-a57: no LSE "
                    "atomics; kpti=1: the KPTI trampoline)")
    pp.add_argument("--stress-ms", type=int, default=1000, metavar="MS",
                    help="milliseconds of this_cpu stress per run (default 1000)")
    pp.add_argument("--cycles", type=int, default=2, metavar="N",
                    help="CPU hotplug off/on cycles (default 2)")
    pp.add_argument("--timeout", type=float, default=900.0, metavar="SECONDS",
                    help="give up on a boot after this long (default 900)")
    pp.add_argument("--patches", metavar="DIR",
                    help="the series folder (default: kernel/ of the source checkout)")
    pp.add_argument("--json", action="store_true", help="print the result as JSON")
    pp.add_argument("-o", "--output", metavar="FILE", help="also write the result as JSON to FILE")
    pp.set_defaults(func=run)


def _cpu_list(text: str) -> list[int]:
    from localmap.errors import LocalmapError

    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise LocalmapError(f"--cpus wants comma-separated integers, not {text!r}") from None
    if not vals or any(v < 1 or v > 64 for v in vals):
        raise LocalmapError(f"--cpus wants CPU counts between 1 and 64, not {text!r}")
    return vals


def run(args) -> int:
    from localmap.errors import LocalmapError
    from localmap.lab import prototype as proto
    from localmap.perf.dynamic import measured_profile

    cpus = _cpu_list(args.cpus)
    if args.stress_ms < 1 or args.cycles < 0 or not args.timeout > 0:
        raise LocalmapError("--stress-ms must be >= 1, --cycles >= 0 and --timeout > 0")
    with progress(args) as prog:
        if args.check_series:
            data = proto.check_series(progress=prog, path=args.patches)
        elif args.build_only:
            base, patched = proto.builds(build=not args.no_build, progress=prog, path=args.patches)
            data = {"baseline": base.to_dict(), "patched": patched.to_dict()}
        else:
            data = proto.run_prototype(
                cpus, build=not args.no_build, profile=not args.no_profile,
                stress_ms=args.stress_ms, cycles=args.cycles, timeout=args.timeout,
                extra_boots=() if args.no_extra else proto.EXTRA_BOOTS,
                analyse=measured_profile, progress=prog, path=args.patches)
    if args.output:
        try:
            with open(args.output, "w") as fh:
                json.dump(data, fh, indent=1, default=str)
        except OSError as exc:
            raise LocalmapError(f"cannot write the result: {exc.strerror}", args.output) from None
    if args.json or args.check_series or args.build_only:
        json.dump(data, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    else:
        render(data)
    if "boots" in data:
        return 0 if all(b.get("booted") and not b.get("failures") for b in data["boots"]) else 1
    return 0


def _ok(v) -> str:
    return "-" if v is None else ("ok" if v else "FAIL")


def render(data: dict, console=None) -> None:
    """The prototype's result as terminal tables."""
    from rich.table import Table

    from localmap.units import fmt_count

    con = console or stdout_console()
    con.print(f"[bold]prototype[/bold]: Linux {data['version']} ({data['flavour']}), "
              f"{len(data['patches'])} patches", highlight=False)
    t = Table(title="boots", header_style="bold")
    for c in ("kernel", "CPUs", "cpu", "append", "booted", "hotplug", "memcg", "fork",
              "self-check failures", "stress updates", "page-table pages", "model", "differences"):
        t.add_column(c, justify="left" if c in ("kernel", "cpu", "append", "differences") else "right")
    for b in data["boots"]:
        r = b.get("results", {})
        st = b.get("stress", {}).get("stress", {})
        diffs = b.get("pgtables", {}).get("differences")
        t.add_row(b["kernel"], str(b["cpus"]), b["cpu_model"], b.get("append", ""),
                  "yes" if b["booted"] else "NO", _ok(r.get("hotplug")), _ok(r.get("memcg")),
                  _ok(r.get("fork")), "-" if b["kernel"] == "baseline" else str(b.get("failures")),
                  fmt_count(st["expected"]) if st.get("expected") else "-",
                  str(b.get("measured_pgtable_pages", "-")), str(b.get("model_pgtable_pages", "-")),
                  "-" if diffs is None else ("none" if not diffs else "; ".join(diffs)[:60]))
    con.print(t)
    ins = data.get("instructions")
    if ins:
        t = Table(title=f"kernel instructions per operation ({ins['cpus']} vCPUs, -icount)",
                  header_style="bold")
        for c in ("workload", "before", "after", "removed", "model: brackets", "model: net (load)",
                  "model: net (hoisted)"):
            t.add_column(c, justify="left" if c == "workload" else "right")
        for w in ins["workloads"]:
            net = w["model_net_removed"]
            t.add_row(w["workload"], f"{w['before']:,.0f}", f"{w['after']:,.0f}",
                      f"{w['measured_removed']:,.0f}", f"{w['model_removed']:,.0f}",
                      f"{net.get('load', 0):,.0f}", f"{net.get('hoisted', 0):,.0f}")
        con.print(t)
