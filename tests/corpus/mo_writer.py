"""Writes .mo files for tests (the layout GNU msgfmt produces, either byte order)."""
from __future__ import annotations

import struct


def make_mo(entries: dict[bytes, bytes], charset: str = "UTF-8", endian: str = "<") -> bytes:
    entries = dict(entries)
    entries[b""] = f"Content-Type: text/plain; charset={charset}\n".encode("ascii")
    keys = sorted(entries)
    n = len(keys)
    orig, trans = 28, 28 + 8 * n
    data_off = 28 + 16 * n
    blob = b""
    otab, ttab = [], []
    for k in keys:
        otab.append((len(k), data_off + len(blob)))
        blob += k + b"\x00"
    for k in keys:
        ttab.append((len(entries[k]), data_off + len(blob)))
        blob += entries[k] + b"\x00"
    head = struct.pack(endian + "7I", 0x950412DE, 0, n, orig, trans, 0, 0)
    tables = b"".join(struct.pack(endian + "II", *e) for e in otab + ttab)
    return head + tables + blob
