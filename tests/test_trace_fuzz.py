"""Property and fuzz tests of the trace reader and the replay (hypothesis), bounded in time.

- A valid allocation or free line, written the way the kernel prints it (random task names,
  CPUs, times, fields in range), reads back as exactly the values written, by the hot path
  (tracefs layout) and by the general path (perf script layout) alike.
- A line damaged at random (a field's value replaced by arbitrary text, the line cut short,
  a character inserted) is either read as exactly the line it still is or refused with a
  :class:`LocalmapError` naming the file and that line: never another exception, never a
  record with a size, alignment or flag the kernel cannot trace.
- A whole trace (the start of a real capture) edited at random (lines dropped, duplicated,
  swapped, cut, bytes changed) either replays, counting every event line it holds, or is
  refused with one error naming the trace (and a line inside it, when it names one).

Each test runs a bounded number of examples with no per-example deadline (the machine may be
loaded); ``LOCALMAP_FUZZ_EXAMPLES`` raises the count for a longer local run.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from localmap.analysis.replay import replay
from localmap.errors import LocalmapError
from localmap.ingest.trace import (ALLOC, FREE, MAX_ALLOC_ALIGN, MAX_ALLOC_SIZE, R_ALIGN, R_ATOMIC,
                                   R_BASE, R_KIND, R_LINE, R_OFF, R_PTR, R_RESERVED, R_SIZE,
                                   iter_records, parse_line, record_head)

from conftest import need_shared

N = int(os.environ.get("LOCALMAP_FUZZ_EXAMPLES", "0")) or None
LINES = settings(max_examples=N or 150, deadline=None, derandomize=bool(os.environ.get("CI")),
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
TRACES = settings(max_examples=N or 25, deadline=None, derandomize=bool(os.environ.get("CI")),
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                         HealthCheck.data_too_large])

# --- valid lines ------------------------------------------------------------------------------

task_names = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126,
                                            blacklist_characters="[]"), min_size=1, max_size=15)
addr = st.integers(min_value=1 << 63, max_value=(1 << 64) - 1)


@st.composite
def alloc_lines(draw):
    v = dict(task=draw(task_names), pid=draw(st.integers(0, 4_194_304)),
             cpu=draw(st.integers(0, 4095)), us=draw(st.integers(0, 10**12 - 1)),
             call_site=draw(st.from_regex(r"[a-z_][a-z0-9_]{0,20}\+0x[0-9a-f]{1,4}/0x[0-9a-f]{1,4}",
                                          fullmatch=True)),
             reserved=draw(st.booleans()), atomic=draw(st.booleans()),
             size=draw(st.integers(1, MAX_ALLOC_SIZE)),
             align=1 << draw(st.integers(0, MAX_ALLOC_ALIGN.bit_length() - 1)),
             base=draw(addr), off=draw(st.integers(0, 10**9 - 1)), ptr=draw(addr))
    head = f"{v['task']:>16}-{v['pid']:<7} [{v['cpu']:03d}] d..1. {v['us'] // 10**6:5d}.{v['us'] % 10**6:06d}"
    body = (f"percpu_alloc_percpu: call_site={v['call_site']} reserved={int(v['reserved'])} "
            f"is_atomic={int(v['atomic'])} size={v['size']} align={v['align']} "
            f"base_addr={v['base']:016x} off={v['off']} ptr={v['ptr']:016x} "
            f"bytes_alloc={v['size'] * 4} gfp_flags=GFP_KERNEL")
    return v, head, body


@st.composite
def free_lines(draw):
    v = dict(task=draw(task_names), pid=draw(st.integers(0, 4_194_304)),
             cpu=draw(st.integers(0, 4095)), us=draw(st.integers(0, 10**12 - 1)),
             base=draw(addr), off=draw(st.integers(0, 10**9 - 1)), ptr=draw(addr))
    head = f"{v['task']:>16}-{v['pid']:<7} [{v['cpu']:03d}] ..... {v['us'] // 10**6:5d}.{v['us'] % 10**6:06d}"
    body = f"percpu_free_percpu: base_addr={v['base']:016x} off={v['off']} ptr={v['ptr']:016x}"
    return v, head, body


def _read(tmp: Path, text: str) -> list[tuple]:
    p = tmp / "trace"
    p.write_text(text)
    return list(iter_records(p))


def _expect(rec: tuple, v: dict, kind: int) -> None:
    assert rec[R_KIND] == kind
    assert (rec[R_BASE], rec[R_OFF], rec[R_PTR]) == (v["base"], v["off"], v["ptr"])
    task, pid, cpu, ts = record_head(rec)
    assert (task.strip(), pid, cpu) == (v["task"], v["pid"], v["cpu"])
    assert round(ts * 10**6) == v["us"]
    if kind == ALLOC:
        assert (rec[R_SIZE], rec[R_ALIGN], rec[R_RESERVED], rec[R_ATOMIC]) == \
            (v["size"], v["align"], v["reserved"], v["atomic"])


@LINES
@given(st.one_of(alloc_lines().map(lambda x: (ALLOC, x)), free_lines().map(lambda x: (FREE, x))))
def test_a_valid_line_reads_back_as_written_by_both_paths(tmp_path, ev):
    kind, (v, head, body) = ev
    (rec,) = _read(tmp_path, f"{head}: {body}\n")                       # tracefs: the hot path
    _expect(rec, v, kind)
    perf = f"{v['task']} {v['pid']} [{v['cpu']:03d}] {v['us'] // 10**6}.{v['us'] % 10**6:06d}: percpu:{body}"
    (rec2,) = _read(tmp_path, perf + "\n")                               # perf script: general
    assert rec2[R_KIND] == kind and rec2[R_BASE:R_PTR + 1] == rec[R_BASE:R_PTR + 1]
    ev2 = parse_line(perf, "x", 1)
    assert (ev2.cpu, ev2.base_addr, ev2.off, ev2.ptr) == (v["cpu"], v["base"], v["off"], v["ptr"])


# --- damaged lines ----------------------------------------------------------------------------

FIELDS = ("reserved", "is_atomic", "size", "align", "base_addr", "off", "ptr", "bytes_alloc")
junk = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x0b\x0c"
                             "\x1c\x1d\x1e\x85\u2028\u2029"), max_size=25)


@st.composite
def damaged(draw):
    kind, (v, head, body) = draw(st.one_of(alloc_lines().map(lambda x: (ALLOC, x)),
                                           free_lines().map(lambda x: (FREE, x))))
    line = f"{head}: {body}"
    how = draw(st.sampled_from(("field", "cut", "insert")))
    if how == "field":
        name = draw(st.sampled_from([f for f in FIELDS if f + "=" in body]))
        value = draw(st.one_of(junk, st.integers(-2**65, 2**65).map(str),
                               st.sampled_from(("0", "-1", "2", "0x10", "4_0", "+4", "3", "12",
                                                "\u0664", "ffffffffffffffffff"))))
        line = re.sub(rf"\b{name}=\S*", lambda m: f"{name}={value}", line, count=1)
    elif how == "cut":
        line = line[:draw(st.integers(0, len(line) - 1))]
    else:
        i = draw(st.integers(0, len(line)))
        line = line[:i] + draw(junk.filter(bool)) + line[i:]
    return kind, v, line


@LINES
@given(damaged())
def test_a_damaged_line_is_read_exactly_or_refused_at_its_line(tmp_path, d):
    kind, v, line = d
    p = tmp_path / "trace"
    p.write_text("# header\n" + line + "\n")
    try:
        recs = list(iter_records(p))
    except LocalmapError as exc:
        assert exc.path == str(p) and exc.line == 2, exc.one_line()
        assert "\n" not in exc.one_line()
        return
    for rec in recs:                    # what is accepted is a line the kernel could print
        assert rec[R_LINE] == 2
        if rec[R_KIND] == ALLOC:
            assert 0 < rec[R_SIZE] <= MAX_ALLOC_SIZE
            assert rec[R_ALIGN] & (rec[R_ALIGN] - 1) == 0 and 0 < rec[R_ALIGN] <= MAX_ALLOC_ALIGN
            assert isinstance(rec[R_RESERVED], bool) and isinstance(rec[R_ATOMIC], bool)
        for field, idx in (("base_addr", R_BASE), ("off", R_OFF), ("ptr", R_PTR)):
            m = re.search(rf"\b{field}=(\S*)", line)
            if m and rec[R_KIND] in (ALLOC, FREE):     # the value read is the value written
                assert int(m.group(1), 16 if field != "off" else 10) == rec[idx]


# --- whole traces -----------------------------------------------------------------------------

EDITS = st.lists(st.tuples(st.sampled_from(("drop", "dup", "swap", "cut", "byte")),
                           st.integers(0, 10**6), st.integers(0, 255)), max_size=4)


@pytest.fixture(scope="module")
def base_trace():
    """The header (without its entries-in-buffer count, which would flag every cut copy
    partial) and first 600 events of s2 (a 2-CPU page-mode capture), and a bundle of s2's other
    files to replay edited copies in."""
    import gzip

    s2 = need_shared("s2_612_4k_smp2_page")
    lines = gzip.decompress((s2 / "trace.gz").read_bytes()).decode().splitlines(keepends=True)
    head = [ln for ln in lines if ln.startswith("#") and "entries-in-buffer" not in ln]
    body = [ln for ln in lines if not ln.startswith("#")][:600]
    work = Path(tempfile.mkdtemp(prefix="localmap-fuzz-"))
    for f in s2.iterdir():
        if not f.name.startswith("trace"):
            (work / f.name).symlink_to(f)
    yield head, body, work
    shutil.rmtree(work, ignore_errors=True)


def _edit(body: list[str], edits) -> str:
    out = list(body)
    for what, i, b in edits:
        if not out:
            break
        i %= len(out)
        if what == "drop":
            del out[i]
        elif what == "dup":
            out.insert(i, out[i])
        elif what == "swap" and i + 1 < len(out):
            out[i], out[i + 1] = out[i + 1], out[i]
        elif what == "cut":
            out = out[:i] + [out[i][: b % max(1, len(out[i]))]]
        elif what == "byte":
            ln = out[i]
            j = b % max(1, len(ln) - 1)
            out[i] = ln[:j] + chr(b if b not in (10, 13) else 63) + ln[j + 1:]
    return "".join(out)


@TRACES
@given(EDITS)
def test_an_edited_trace_replays_whole_or_is_refused_in_one_line(base_trace, edits):
    head, body, work = base_trace
    text = _edit(body, edits)
    trace = work / "trace"
    trace.write_text("".join(head) + text)
    n_lines = len(head) + text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    try:
        r = replay(work)
    except LocalmapError as exc:
        assert exc.path is not None and "\n" not in exc.one_line()
        assert exc.line is None or 1 <= exc.line <= n_lines, exc.one_line()
        return
    # accepted: every whole event line was counted (a cut last line is not, and makes it partial)
    whole = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
    events = sum(1 for ln in whole.splitlines() if "percpu_" in ln)
    assert r.nr_events == events
    assert 0.0 <= r.agreement <= 1.0 and r.agree <= r.nr_allocs
    if whole != text and "percpu_" in text[len(whole):]:
        assert r.partial


BAD_VALUES = {"size": ("0", "65537", "-4", "0x4", "4_0", "+4", "\u0664", "99999999999"),
              "align": ("0", "3", "12", "131072", "-8"),
              "reserved": ("2", "-1", "yes", ""), "is_atomic": ("2", "01x"),
              "off": ("-8", "x", "0x10", "1e3"),
              "base_addr": ("zz", "1ffff800082b4b000", "(____ptrval____)"),
              "ptr": ("g", "(____ptrval____)", "-1")}
GOOD = ("          <idle>-0       [000] d....     0.000000: percpu_alloc_percpu: "
        "call_site=gic_init_bases+0x16c/0x230 reserved=0 is_atomic=0 size=4 align=4 "
        "base_addr=ffff800082b4b000 off=5512 ptr=ffff800081f6d588 bytes_alloc=16 "
        "gfp_flags=GFP_KERNEL")


@pytest.mark.parametrize("layout", ["tracefs", "perf-script"])
@pytest.mark.parametrize("field,value", [(f, v) for f, vs in BAD_VALUES.items() for v in vs])
def test_every_bad_field_value_is_refused_at_its_line(tmp_path, layout, field, value):
    line = re.sub(rf"\b{field}=\S*", lambda m: f"{field}={value}", GOOD, count=1)
    if layout == "perf-script":
        line = line.replace("d....     0.000000: percpu_", "0.000000: percpu:percpu_")
    (ok,) = _read(tmp_path, "# tracer: nop\n" + (GOOD if layout == "tracefs" else line.replace(
        f"{field}={value}", re.search(rf"\b{field}=\S*", GOOD).group(0))) + "\n")
    assert ok[R_SIZE] == 4                          # the undamaged line reads
    p = tmp_path / "trace"
    p.write_text("# tracer: nop\n" + line + "\n")
    with pytest.raises(LocalmapError) as e:
        list(iter_records(p))
    assert (e.value.path, e.value.line) == (str(p), 2)
