"""Kernel containers of every Debian architecture: detection and compressed payloads (no network)."""

from __future__ import annotations

import gzip
import lzma
import struct

import pytest
import zstandard

from localmap.errors import LocalmapError
from localmap.perf.images import _arm_text_offset, detect, find_payload


def test_detect_by_header():
    bz = bytearray(0x400)
    bz[0x202:0x206] = b"HdrS"
    assert detect(bytes(bz)) == ("amd64", "bzImage")
    z = bytearray(0x400)
    z[0x24:0x28] = struct.pack("<I", 0x016F2818)
    assert detect(bytes(z)) == ("armhf", "zImage")
    s = bytes.fromhex("0008000080000200") + bytes.fromhex("0200001860000050") + bytes(100)
    assert detect(s) == ("s390x", "s390 image")
    rv = bytearray(0x100)
    rv[0x30:0x38] = b"RISCV\0\0\0"
    assert detect(bytes(rv)) == ("riscv64", "Image")
    a = bytearray(0x100)
    a[56:60] = b"ARM\x64"
    assert detect(bytes(a)) == ("arm64", "Image")
    with pytest.raises(LocalmapError, match="not a kernel image"):
        detect(bytes(0x400))


@pytest.mark.parametrize("kind", ["gzip", "xz", "zstd"])
def test_payload_is_the_longest_complete_stream(kind):
    payload = bytes(range(256)) * 400
    comp = {"gzip": gzip.compress, "xz": lambda b: lzma.compress(b, format=lzma.FORMAT_XZ),
            "zstd": lambda b: zstandard.ZstdCompressor().compress(b)}[kind](payload)
    magic = {"gzip": b"\x1f\x8b\x08", "xz": b"\xfd7zXZ\x00", "zstd": b"\x28\xb5\x2f\xfd"}[kind]
    # a decompressor carries the same magic as data; a small real stream precedes the payload
    decoy = magic + b"not a stream" + gzip.compress(b"tiny")
    blob = b"\0" * 100 + decoy + b"\0" * 13 + comp + b"\x12\x34\x56\x78"  # + size trailer
    got_kind, pos, out = find_payload(blob)
    assert (got_kind, out) == (kind, payload) and pos == 100 + len(decoy) + 13
    with pytest.raises(LocalmapError, match="no complete"):
        find_payload(b"\0" * 100 + magic + b"not a stream" + comp[:len(comp) // 2])


@pytest.mark.parametrize("kind", ["gzip", "xz"])
def test_a_payload_past_the_bound_is_refused_not_skipped(kind, monkeypatch):
    import localmap.perf.images as images

    payload = bytes(200_000)
    comp = gzip.compress(payload) if kind == "gzip" else lzma.compress(payload)
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 100_000)
    with pytest.raises(LocalmapError, match="inflates to more than"):
        find_payload(b"\0" * 64 + comp + b"\x12\x34\x56\x78")


def test_arm_text_offset_follows_the_platforms():
    assert _arm_text_offset({}) == 0x8000
    assert _arm_text_offset({"CONFIG_ARCH_MESON": "y"}) == 0x208000
    assert _arm_text_offset({"CONFIG_ARCH_MESON": "y", "CONFIG_ARCH_AXXIA": "y"}) == 0x308000
