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


def make_shared_mo(n: int, shared: bytes, endian: str = "<") -> bytes:
    """A .mo whose `n` entries all point at one string, msgid and msgstr alike (the format allows
    it): a file of about 16 n + len(shared) bytes that claims 2 n len(shared) bytes of text."""
    data_off = 28 + 16 * n + 64
    header = b"Content-Type: text/plain; charset=UTF-8\n"
    head = struct.pack(endian + "7I", 0x950412DE, 0, n + 1, 28, 28 + 8 * (n + 1), 0, 0)
    # Entry 0 is the header (msgid ""); every other entry is the shared string.
    otab = struct.pack(endian + "II", 0, data_off) + struct.pack(endian + "II", len(shared), data_off + 64) * n
    ttab = struct.pack(endian + "II", len(header), data_off) + struct.pack(endian + "II", len(shared), data_off + 64) * n
    body = head + otab + ttab
    body += b"\x00" * (data_off - len(body))
    return body + header.ljust(64, b"\x00") + shared + b"\x00"
