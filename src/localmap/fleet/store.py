"""The results folder of a fleet run: Parquet files appended as bundles finish (pyarrow).

One row per bundle x configuration, the columns of :data:`SCHEMA`. The driver writes the rows
it has collected every second or so as a new file ``part-<time>-<pid>.parquet``, written under
a temporary name and renamed into place, so a file is either whole or absent: a run killed at
any moment loses at most the rows it had not written yet, and the next run over the same
folder skips every bundle x configuration already there. When a pair is written twice (a
retried failure), the newest file wins. The folder is plain Parquet: pandas, DuckDB, Spark or
``pyarrow.dataset`` read it directly.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterable

from localmap.errors import LocalmapError

PART_GLOB = "part-*.parquet"


def _schema():
    import pyarrow as pa

    s, i32, i64, f64, b = pa.string(), pa.int32(), pa.int64(), pa.float64(), pa.bool_()
    return pa.schema([
        # which bundle, which machine
        ("bundle", s), ("name", s), ("config", s), ("granule", s), ("va_bits", i32), ("cpus", i32),
        # failure (null when the row succeeded)
        ("error", s), ("error_reason", s),
        # the capture and its replay (the same for every configuration of a bundle)
        ("kernel", s), ("mode", s), ("page_size", i32), ("possible_cpus", i32),
        ("events", i64), ("allocs", i64), ("agree", i64), ("agreement", f64),
        ("agreement_nonatomic", f64), ("agreement_atomic", f64), ("misses", i64),
        ("miss_causes", s), ("reorders", i32), ("partial", b), ("partial_reasons", s),
        ("meminfo_ok", b), ("vmalloc_ok", b), ("final_populated_bytes", i64),
        ("replay_seconds", f64),
        # the design machine of this configuration
        ("unit_size", i64), ("split_level", i32), ("window_bytes", i64), ("live_chunks", i32),
        ("chunks_created", i32), ("chunks_destroyed", i32), ("local_va_bytes", i64),
        ("local_va_peak_bytes", i64), ("pgtable_extra_bytes", i64),
        ("pgtable_extra_peak_bytes", i64),
        # how it ran
        ("seconds", f64), ("worker", s), ("run_id", s),
    ])


_SCHEMA = None


def schema():
    """The Parquet schema of a row (built on first use: pyarrow is imported only by fleets)."""
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = _schema()
    return _SCHEMA


def columns() -> list[str]:
    return schema().names


def normalize(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with exactly the columns of the schema (missing ones None), as read back."""
    return {k: row.get(k) for k in columns()}


class ResultStore:
    """The Parquet files of one results folder (created when missing)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LocalmapError(f"cannot create the results folder: {exc.strerror}",
                                self.folder) from None
        if not self.folder.is_dir():
            raise LocalmapError("the results folder is not a folder", self.folder)
        self._seq = 0

    def parts(self) -> list[Path]:
        """The files written so far, oldest first."""
        return sorted(self.folder.glob(PART_GLOB))

    def append(self, rows: Iterable[dict[str, Any]]) -> Path | None:
        """Write ``rows`` as one new file (atomically); returns it, or None for no rows."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = list(rows)
        if not rows:
            return None
        table = pa.Table.from_pylist([normalize(r) for r in rows], schema=schema())
        self._seq += 1
        name = f"part-{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.parquet"
        final = self.folder / name
        tmp = self.folder / ("." + name + ".tmp")
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise LocalmapError(f"cannot write results: {exc.strerror}", self.folder) from None
        return final

    def read(self) -> list[dict[str, Any]]:
        """Every row written, oldest file first."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        out: list[dict[str, Any]] = []
        for p in self.parts():
            try:
                table = pq.read_table(p)
            except (OSError, pa.ArrowException) as exc:
                raise LocalmapError(f"not a results file of localmap fleet ({exc}); remove it "
                                    "or use another results folder", p) from None
            missing = [n for n in ("bundle", "config", "error") if n not in table.column_names]
            if missing:
                raise LocalmapError(f"not a results file of localmap fleet (no column "
                                    f"{', '.join(missing)})", p)
            out.extend(table.to_pylist())
        return out

    def latest(self) -> dict[tuple[str, str], dict[str, Any]]:
        """``(bundle, config label) -> row``, the newest row of each pair."""
        return {(r["bundle"], r["config"]): r for r in self.read()}

    def clear(self) -> int:
        """Remove every results file (``--fresh``); returns how many."""
        parts = self.parts()
        for p in parts:
            p.unlink()
        for p in self.folder.glob(".part-*.tmp"):
            p.unlink()
        return len(parts)
