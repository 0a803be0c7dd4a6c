"""The trace formats users bring, derived independently from the real s2 capture.

The test rewrites ``s2_612_4k_smp2_page``'s tracefs ``trace`` itself (its own regex, not the
package's parser) into ``trace-cmd report`` layout, ``perf script`` layout, the old line format
without call_site/bytes_alloc/gfp_flags, and plain/xz files. Every form must give the same events
and the same replay (agreement, every decision, final state) as the original; lost-event markers
of tracefs and trace-cmd must make the replay a flagged partial one.
"""

from __future__ import annotations

import gzip
import lzma
import re
from pathlib import Path

import pytest

from localmap.analysis.replay import replay
from localmap.errors import LocalmapError
from localmap.ingest.trace import ALLOC, CREATE, FREE, read_trace


# tracefs: "  TASK-PID  [CPU] FLAGS  SECS.USECS: EVENT: FIELDS"
LINE = re.compile(r"^\s*(?P<task>.*?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<flags>\S+)\s+"
                  r"(?P<ts>\d+\.\d+):\s+(?P<event>percpu_\w+):\s*(?P<rest>.*)$")


@pytest.fixture(scope="module")
def s2_text(s2) -> str:
    with gzip.open(s2 / "trace.gz", "rt") as fh:
        return fh.read()


@pytest.fixture(scope="module")
def s2_records(s2_text):
    recs = []
    for line in s2_text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = LINE.match(line)
        assert m, f"unexpected line in the real trace: {line!r}"
        recs.append(m.groupdict())
    return recs


@pytest.fixture(scope="module")
def original(s2, s2_text, tmp_path_factory):
    d = _bundle(s2, tmp_path_factory.mktemp("orig"), "trace", s2_text)
    return read_trace(d / "trace"), replay(d)


def _bundle(s2, folder: Path, trace_name: str, text: str | None, data: bytes | None = None) -> Path:
    """A bundle folder: the s2 capture's other files, and the given trace."""
    for p in s2.iterdir():
        if not p.name.startswith("trace"):
            (folder / p.name).symlink_to(p)
    if data is None:
        data = text.encode()
    (folder / trace_name).write_bytes(data)
    return folder


def _key(e, with_extras=True):
    base = (e.kind, e.cpu, round(e.ts, 6), e.pid, e.reserved, e.is_atomic, e.size, e.align,
            e.base_addr, e.off, e.ptr)
    return base + ((e.call_site, e.bytes_alloc, e.gfp_flags) if with_extras else ())


def _assert_same_replay(a, b):
    assert (b.nr_allocs, b.agree, b.agree_nonatomic, b.agree_atomic, b.swaps) == \
        (a.nr_allocs, a.agree, a.agree_nonatomic, a.agree_atomic, a.swaps)
    assert b.decisions == a.decisions
    assert b.final_state() == a.final_state()
    assert not b.partial


# -- the rewrites ----------------------------------------------------------------------------

def to_trace_cmd(recs, empty_cpus=()) -> str:
    out = ["version = 6"]
    out += [f"CPU {c} is empty" for c in empty_cpus]
    out.append("cpus=2")
    for r in recs:
        ev = r["event"] + ":"
        out.append(f"{r['task']:>16}-{int(r['pid']):<5} [{int(r['cpu']):03d}] "
                   f"{r['ts']:>12}: {ev:<20} {r['rest']}")
    return "\n".join(out) + "\n"


def to_perf_script(recs) -> str:
    out = []
    for r in recs:
        comm = "swapper" if r["task"] == "<idle>" else r["task"]
        # libtraceevent prints %p with a 0x prefix
        rest = re.sub(r"(base_addr|ptr)=([0-9a-f]{16})", r"\1=0x\2", r["rest"])
        out.append(f"{comm:>16} {int(r['pid']):>6} [{int(r['cpu']):03d}] {r['ts']:>12}: "
                   f"percpu:{r['event']}: {rest}")
    return "\n".join(out) + "\n"


def to_old_format(text: str) -> str:
    return re.sub(r"(call_site|bytes_alloc|gfp_flags)=\S+ ?", "", text)


# -- same events -----------------------------------------------------------------------------

def test_rewrite_covers_every_event(s2_records, original):
    trace, res = original
    # the header says 6751/6751; two more events were written while the file was being read
    assert len(s2_records) == len(trace.events) == 6753
    assert trace.format == "tracefs" and trace.lost_events == 0
    assert res.agreement == 1.0 and not res.partial


def test_trace_cmd_report_layout(s2, s2_records, original, tmp_path):
    text = to_trace_cmd(s2_records)
    assert text.splitlines()[1] == "cpus=2"
    d = _bundle(s2, tmp_path, "trace", text)
    t = read_trace(d / "trace")
    assert t.format == "trace-cmd" and t.nr_cpus_header == 2 and t.lost_events == 0
    assert [_key(e) for e in t.events] == [_key(e) for e in original[0].events]
    _assert_same_replay(original[1], replay(d))


def test_trace_cmd_empty_cpu_lines_are_skipped(s2, s2_records, original, tmp_path):
    # trace-cmd prints "CPU N is empty" for CPUs without data; the line carries no event
    text = to_trace_cmd(s2_records, empty_cpus=(1,))
    t = read_trace(_bundle(s2, tmp_path, "trace", text) / "trace")
    assert t.format == "trace-cmd" and t.skipped_lines == 0
    assert [_key(e) for e in t.events] == [_key(e) for e in original[0].events]


def test_perf_script_layout(s2, s2_records, original, tmp_path):
    text = to_perf_script(s2_records)
    assert " percpu:percpu_alloc_percpu: call_site=" in text
    d = _bundle(s2, tmp_path, "trace", text)
    t = read_trace(d / "trace")
    assert t.format == "perf-script" and t.lost_events == 0
    no_ts = [k[:2] + k[3:] for k in map(_key, t.events)]
    assert no_ts == [k[:2] + k[3:] for k in map(_key, original[0].events)]
    assert t.events[0].task == "swapper" and t.events[0].pid == 0
    _assert_same_replay(original[1], replay(d))


def test_perf_script_timestamps(s2, s2_records, original, tmp_path):
    t = read_trace(_bundle(s2, tmp_path, "trace", to_perf_script(s2_records)) / "trace")
    assert [e.ts for e in t.events] == [e.ts for e in original[0].events]


def test_old_format_without_call_site(s2, s2_text, original, tmp_path):
    text = to_old_format(s2_text)
    assert "call_site" not in text and "bytes_alloc" not in text and "gfp_flags" not in text
    d = _bundle(s2, tmp_path, "trace", text)
    t = read_trace(d / "trace")
    assert t.old_format
    assert [_key(e, False) for e in t.events] == [_key(e, False) for e in original[0].events]
    assert all(e.call_site == "" and e.bytes_alloc == -1 for e in t.events if e.kind == ALLOC)
    _assert_same_replay(original[1], replay(d))


@pytest.mark.parametrize("kind", ["plain", "xz", "gz"])
def test_compression(s2, kind, s2_text, original, tmp_path):
    raw = s2_text.encode()
    name, data = {"plain": ("trace", raw), "xz": ("trace.xz", lzma.compress(raw)),
                  "gz": ("trace.gz", gzip.compress(raw))}[kind]
    d = _bundle(s2, tmp_path, name, None, data)
    t = read_trace(d / name)
    assert [_key(e) for e in t.events] == [_key(e) for e in original[0].events]
    _assert_same_replay(original[1], replay(d))


def test_truncated_xz_is_one_clear_error(s2_text, tmp_path):
    data = lzma.compress(s2_text.encode())
    p = tmp_path / "trace.xz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(LocalmapError) as ei:
        read_trace(p)
    assert "truncated" in ei.value.message and ei.value.path == str(p)


# -- lost events -----------------------------------------------------------------------------

def test_tracefs_overwritten_ring_buffer_is_partial(s2, s2_text, tmp_path):
    # the tracer wrote 7000 events but the buffer holds the last 6751: 249 were overwritten
    text = s2_text.replace("entries-in-buffer/entries-written: 6751/6751",
                           "entries-in-buffer/entries-written: 6751/7000", 1)
    assert text != s2_text
    d = _bundle(s2, tmp_path, "trace", text)
    t = read_trace(d / "trace")
    assert t.lost_events == 249
    res = replay(d)
    assert res.partial and any("249 events lost" in r for r in res.partial_reasons)


def test_tracefs_oldest_events_overwritten(s2, s2_records, s2_text, tmp_path):
    """A real overrun drops the *oldest* events: the replay must still run and say partial."""
    lines = s2_text.splitlines(keepends=True)
    header = [ln for ln in lines if ln.startswith("#")]
    body = [ln for ln in lines if not ln.startswith("#")]
    dropped = 300
    header = [h.replace("6751/6751", f"{6751 - dropped}/6751") for h in header]
    d = _bundle(s2, tmp_path, "trace", "".join(header + body[dropped:]))
    res = replay(d)
    assert res.partial and any(f"{dropped} events lost" in r for r in res.partial_reasons)
    assert res.nr_allocs == sum(1 for r in s2_records[dropped:]
                                if r["event"] == "percpu_alloc_percpu")


def test_trace_cmd_lost_events_marker_is_partial(s2, s2_records, tmp_path):
    text = to_trace_cmd(s2_records)
    lines = text.splitlines(keepends=True)
    mid = len(lines) // 2
    lines.insert(mid, "CPU:1 [LOST 17 EVENTS]\n")
    d = _bundle(s2, tmp_path, "trace", "".join(lines))
    t = read_trace(d / "trace")
    assert t.lost_events == 17 and t.format == "trace-cmd"
    assert any("CPU 1: 17 events lost" in x for x in t.lost_detail)
    res = replay(d)
    assert res.partial and any("17 events lost" in r for r in res.partial_reasons)


def test_event_kinds_survive_every_layout(s2_records):
    kinds = {r["event"] for r in s2_records}
    assert {"percpu_alloc_percpu", "percpu_free_percpu", "percpu_create_chunk"} <= kinds
    counts = {k: sum(1 for r in s2_records if r["event"] == k) for k in kinds}
    text = to_perf_script(s2_records)
    t_events = [e.kind for e in _parse_text(text)]
    assert t_events.count(ALLOC) == counts["percpu_alloc_percpu"]
    assert t_events.count(FREE) == counts["percpu_free_percpu"]
    assert t_events.count(CREATE) == counts["percpu_create_chunk"]


def _parse_text(text: str):
    from localmap.ingest.trace import parse_line
    return [e for i, ln in enumerate(text.splitlines(), 1)
            if (e := parse_line(ln, "<mem>", i)) is not None]


@pytest.mark.parametrize("compress", [False, True])
def test_lines_ending_with_equals_a_line_by_line_scan(tmp_path, compress):
    """The block-wise suffix search finds the same lines, with the same numbers, as splitting
    the file into lines: matches across block boundaries, a last line without its end, and a
    suffix inside a line (not at its end) that must not count."""
    import gzip as _gzip
    import random

    from localmap.ingest.textfile import BLOCK_CHARS, lines_ending_with

    rnd = random.Random(7)
    lines = []
    while sum(len(x) + 1 for x in lines) < 3 * BLOCK_CHARS:
        r = rnd.random()
        name = ("__per_cpu_start" if r < 0.01 else "__per_cpu_end" if r < 0.02 else
                "__per_cpu_start_x" if r < 0.03 else f"sym{rnd.randrange(10**6)}")
        lines.append(f"{rnd.randrange(16**16):016x} {rnd.choice('tTdD')} {name}")
    lines.append("ffff800080000000 D __per_cpu_end")          # last, without a newline
    text = "\n".join(lines)
    p = tmp_path / ("k.gz" if compress else "k")
    p.write_bytes(_gzip.compress(text.encode()) if compress else text.encode())
    want = [(i, ln) for i, ln in enumerate(lines, 1)
            if ln.endswith(("__per_cpu_start", "__per_cpu_end"))]
    got = list(lines_ending_with(p, ("__per_cpu_start", "__per_cpu_end")))
    assert got == want and len(want) > 10 and want[-1][0] == len(lines)


def test_percpu_bounds_ignore_other_symbols_ending_alike(s1, tmp_path):
    """Only `__per_cpu_start`/`__per_cpu_end` themselves bound the static percpu area: KVM's
    `__kvm_nvhe___per_cpu_*`, wherever kallsyms lists them, is neither an error nor a bound."""
    import gzip as _gzip

    from localmap.ingest.bundle import load_bundle

    lines = _gzip.open(s1 / "kallsyms.gz", "rt").read().splitlines(keepends=True)
    kvm = [ln for ln in lines if ln.rstrip().endswith("__kvm_nvhe___per_cpu_start")]
    assert kvm
    moved = kvm + [ln for ln in lines if ln not in kvm]          # now before the real ones
    dest = tmp_path / "b"
    dest.mkdir()
    for f in s1.iterdir():
        if f.name != "kallsyms.gz":
            (dest / f.name).symlink_to(f)
    (dest / "kallsyms").write_text("".join(moved))
    assert load_bundle(dest).kallsyms_percpu_bounds == load_bundle(s1).kallsyms_percpu_bounds
