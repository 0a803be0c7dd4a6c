"""SOURCE arguments of a fleet run, expanded into bundle locations through fsspec.

A SOURCE is one of:

* a **bundle folder** (it holds ``trace``, ``trace.gz`` or ``trace.xz``): that bundle;
* a **folder of bundles**: every folder below it that holds a trace file, at any depth;
* a **glob** (``*``, ``?``, ``[``): each match that is a bundle folder or a folder of bundles,
  each matched trace file's folder, each matched manifest; other files are ignored;
* a **manifest**, a ``.csv`` or ``.json`` file: CSV with a ``bundle`` (or ``path``/``url``)
  column, or one location per row without a header; JSON a list of locations or of objects
  with a ``bundle`` (or ``path``/``url``) key, or ``{"bundles": [...]}``. A relative entry is
  relative to the manifest's folder. Entries are taken as written: one that does not exist
  becomes that bundle's error, not the run's.

Any of them may be a URL fsspec understands (``file://``, ``s3://``, ``memory://`` ...). Local
locations are returned as absolute paths, others as full URLs. The result keeps the order of
the sources and drops repeated locations.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath

from localmap.errors import LocalmapError
from localmap.fileio import read_input_bytes

TRACE_NAMES = ("trace", "trace.gz", "trace.xz")
MANIFEST_SUFFIXES = (".csv", ".json")
LOCATION_KEYS = ("bundle", "path", "url")
_GLOB_CHARS = "*?["


def url_to_fs(location: str):
    """``(filesystem, path)`` for a location (a plain path is the local filesystem)."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(location)
    except (ValueError, ImportError) as exc:   # unknown protocol, or its package is missing
        raise LocalmapError(f"cannot open this location: {exc}", location) from None


def is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def location(fs, path: str) -> str:
    """How a bundle is named in the results: an absolute path when local, else a URL."""
    return path if is_local(fs) else fs.unstrip_protocol(path)


def _is_bundle_dir(fs, path: str) -> bool:
    return any(fs.isfile(posixpath.join(path, n)) for n in TRACE_NAMES)


def _bundles_below(fs, path: str) -> list[str]:
    """Every folder at or below ``path`` that holds a trace file, sorted."""
    found = set()
    for f in fs.find(path):
        if posixpath.basename(f) in TRACE_NAMES:
            found.add(posixpath.dirname(f))
    return sorted(found)


def _is_manifest(path: str) -> bool:
    return path.lower().endswith(MANIFEST_SUFFIXES)


def expand(sources: list[str]) -> list[str]:
    """The bundle locations of ``sources`` (see module doc), in order, without repeats.
    A SOURCE that does not exist, a glob matching nothing, a folder without a bundle and a
    manifest that cannot be read are :class:`LocalmapError`."""
    out: dict[str, None] = {}
    for source in sources:
        for loc in _expand_one(source):
            out.setdefault(loc, None)
    return list(out)


def _expand_one(source: str) -> list[str]:
    fs, path = url_to_fs(source)
    if any(c in path for c in _GLOB_CHARS) and not fs.exists(path):
        found: list[str] = []
        for m in sorted(fs.glob(path)):
            if fs.isdir(m):
                found += [location(fs, b) for b in _bundles_below(fs, m)]
            elif posixpath.basename(m) in TRACE_NAMES:
                found.append(location(fs, posixpath.dirname(m)))
            elif _is_manifest(m):
                found += read_manifest(location(fs, m))
        if not found:
            raise LocalmapError("no bundle matches this pattern", source)
        return found
    if not fs.exists(path):
        raise LocalmapError("no such bundle folder, folder of bundles or manifest", source)
    if fs.isdir(path):
        if _is_bundle_dir(fs, path):
            return [location(fs, path)]
        found = [location(fs, b) for b in _bundles_below(fs, path)]
        if not found:
            raise LocalmapError("no bundle in this folder (no folder below it holds a trace, "
                                "trace.gz or trace.xz)", source)
        return found
    if _is_manifest(path):
        return read_manifest(source)
    return [location(fs, path)]        # a bare trace file: a bundle of its own


MAX_MANIFEST_BYTES = 64 << 20


def _is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def read_manifest(source: str) -> list[str]:
    """The bundle locations a CSV or JSON manifest lists (see module doc)."""
    fs, path = url_to_fs(source)
    try:
        if _is_local(fs):           # a regular file only (a FIFO would block), bounded
            raw = read_input_bytes(path, MAX_MANIFEST_BYTES, "manifest")
        else:
            with fs.open(path, "rb") as fh:
                raw = fh.read(MAX_MANIFEST_BYTES + 1)
            if len(raw) > MAX_MANIFEST_BYTES:
                raise LocalmapError(f"is more than {MAX_MANIFEST_BYTES >> 20} MiB", source)
        text = raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LocalmapError(f"cannot read the manifest: {exc}", source) from None
    if path.lower().endswith(".json"):
        entries = _json_entries(text, source)
    else:
        entries = _csv_entries(text, source)
    if not entries:
        raise LocalmapError("the manifest lists no bundle", source)
    base = posixpath.dirname(path)
    out = []
    for line, entry in entries:
        entry = entry.strip()
        if not entry:
            raise LocalmapError("empty bundle location", source, line)
        if "://" in entry or "::" in entry:
            efs, epath = url_to_fs(entry)
            out.append(location(efs, epath))
        elif is_local(fs):
            out.append(location(fs, posixpath.normpath(posixpath.join(base, entry))))
        else:
            out.append(fs.unstrip_protocol(posixpath.normpath(posixpath.join(base, entry))))
    return out


def _csv_entries(text: str, source: str) -> list[tuple[int, str]]:
    rows = [(i, r) for i, r in enumerate(csv.reader(io.StringIO(text)), 1)
            if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if not rows:
        return []
    header = [c.strip().lower() for c in rows[0][1]]
    col = next((header.index(k) for k in LOCATION_KEYS if k in header), None)
    if col is None:
        return [(i, r[0]) for i, r in rows]
    out = []
    for i, r in rows[1:]:
        if col >= len(r):
            raise LocalmapError(f"row has no {header[col]!r} column", source, i)
        out.append((i, r[col]))
    return out


def _json_entries(text: str, source: str) -> list[tuple[int | None, str]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LocalmapError(f"not JSON: {exc.msg}", source, exc.lineno) from None
    if isinstance(doc, dict) and "bundles" in doc:
        doc = doc["bundles"]
    if not isinstance(doc, list):
        raise LocalmapError('expected a list of bundle locations (or {"bundles": [...]})', source)
    out = []
    for i, item in enumerate(doc):
        if isinstance(item, dict):
            key = next((k for k in LOCATION_KEYS if k in item), None)
            item = item.get(key) if key else None
        if not isinstance(item, str):
            raise LocalmapError(f"entry {i} is not a bundle location (a string, or an object "
                                "with a 'bundle' key)", source)
        out.append((None, item))
    return out
