"""A reader of Qt's binary resource files (``.rcc``, what ``rcc -binary`` writes).

Layout (all integers big-endian; see Qt's ``rcc.cpp`` / ``qresource.cpp``):

- header: ``b"qres"``, version (4 bytes, 1-3), tree offset, data offset, names
  offset (4 bytes each), and from version 3 the overall flags (4 bytes);
- tree: fixed-size entries, entry 0 the root directory. Each entry is a name
  offset (4), flags (2: ``COMPRESSED`` zlib, ``DIRECTORY``, ``COMPRESSED_ZSTD``),
  then for a directory its child count (4) and first child's entry index (4),
  for a file its territory (2), language (2) and data offset (4); from version
  2 an 8-byte last-modified time (ms since the epoch) follows;
- names: a 2-byte length in UTF-16 code units, a 4-byte hash, the UTF-16BE text;
- data: a 4-byte length, then the payload; a zlib entry's payload is
  ``qCompress``'s: a 4-byte uncompressed size, then a zlib stream.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"qres"
SUPPORTED_VERSIONS = (1, 2, 3)
COMPRESSED = 0x01
DIRECTORY = 0x02
COMPRESSED_ZSTD = 0x04
# Tree entry sizes: version 1, and version 2+ (which adds the last-modified time).
ENTRY_SIZE_V1 = 14
ENTRY_SIZE_V2 = 22


class RccError(ValueError):
    """A file that is not a readable Qt resource file; the message says where it broke."""


@dataclass(frozen=True)
class RccEntry:
    """One file inside a resource file: its path (``/``-separated, no leading slash) and flags."""

    path: str
    flags: int
    data_offset: int

    @property
    def compression(self) -> str:
        """"zlib", "zstd" or "none"."""
        return "zlib" if self.flags & COMPRESSED else "zstd" if self.flags & COMPRESSED_ZSTD else "none"


class RccFile:
    """A parsed ``.rcc``: ``entries()`` lists its files, ``read(entry)`` decodes one.

    Args:
        source: the file's path, or its bytes.

    Raises:
        RccError: not a resource file, an unsupported version, or offsets that point
            outside the file (truncated or corrupt).
    """

    def __init__(self, source: str | Path | bytes) -> None:
        self.name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
        self.blob = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
        if self.blob[:4] != MAGIC:
            raise RccError(f"{self.name} is not a Qt resource file: it starts with {self.blob[:4]!r}, not {MAGIC!r}")
        self.version, self.tree_offset, self.data_offset, self.names_offset = self._unpack(">4I", 4, "header")
        if self.version not in SUPPORTED_VERSIONS:
            raise RccError(f"{self.name}: resource format version {self.version} is not supported (only 1-3)")
        self.entry_size = ENTRY_SIZE_V1 if self.version == 1 else ENTRY_SIZE_V2
        for what, offset in (("tree", self.tree_offset), ("data", self.data_offset), ("names", self.names_offset)):
            if offset >= len(self.blob):
                raise RccError(f"{self.name}: {what} offset {offset} is past the end of the file ({len(self.blob)} bytes)")

    def _unpack(self, layout: str, offset: int, what: str) -> tuple:
        end = offset + struct.calcsize(layout)
        if offset < 0 or end > len(self.blob):
            raise RccError(f"{self.name}: the {what} at byte {offset} runs past the end of the file ({len(self.blob)} bytes); truncated?")
        return struct.unpack_from(layout, self.blob, offset)

    def _name(self, offset: int) -> str:
        start = self.names_offset + offset
        (length,) = self._unpack(">H", start, "name length")
        text = start + 6  # past the length and the hash
        if text + 2 * length > len(self.blob):
            raise RccError(f"{self.name}: the name at byte {start} runs past the end of the file; truncated?")
        return self.blob[text : text + 2 * length].decode("utf-16-be")

    def entries(self) -> Iterator[RccEntry]:
        """Every file in the tree, depth first, in the file's (sorted) order.

        Raises:
            RccError: a child index outside the tree, or a directory that contains itself.
        """
        pending = [(0, "")]
        visited: set[int] = set()
        while pending:
            index, prefix = pending.pop()
            if index in visited:
                raise RccError(f"{self.name}: tree entry {index} is reached twice (a directory loop); corrupt file")
            visited.add(index)
            at = self.tree_offset + index * self.entry_size
            name_offset, flags = self._unpack(">IH", at, f"tree entry {index}")
            # The root's name is empty in practice; never part of the path.
            path = "" if index == 0 else f"{prefix}{self._name(name_offset)}"
            if flags & DIRECTORY:
                count, first = self._unpack(">II", at + 6, f"tree entry {index}")
                pending.extend((child, f"{path}/" if path else "") for child in reversed(range(first, first + count)))
            else:
                (data_offset,) = self._unpack(">I", at + 10, f"tree entry {index}")
                yield RccEntry(path, flags, data_offset)

    def read(self, entry: RccEntry) -> bytes:
        """The entry's bytes, decompressed.

        Raises:
            RccError: a payload outside the file, or one that does not decompress.
        """
        start = self.data_offset + entry.data_offset
        (length,) = self._unpack(">I", start, f"data length of {entry.path}")
        payload = self.blob[start + 4 : start + 4 + length]
        if len(payload) != length:
            raise RccError(f"{self.name}: {entry.path}'s {length}-byte payload runs past the end of the file; truncated?")
        if entry.compression == "zlib":
            if length < 4:
                raise RccError(f"{self.name}: {entry.path} is zlib-compressed but its payload has no size prefix")
            (size,) = struct.unpack_from(">I", payload)
            try:
                out = zlib.decompress(payload[4:])
            except zlib.error as err:
                raise RccError(f"{self.name}: {entry.path} does not decompress ({err}); corrupt file") from err
            if len(out) != size:
                raise RccError(f"{self.name}: {entry.path} decompressed to {len(out)} bytes, its header says {size}")
            return out
        if entry.compression == "zstd":
            try:
                import zstandard
            except ImportError as err:
                raise RccError(f"{self.name}: {entry.path} is zstd-compressed: pip install zstandard") from err
            try:
                return zstandard.ZstdDecompressor().decompress(payload)
            except zstandard.ZstdError as err:
                raise RccError(f"{self.name}: {entry.path} does not decompress ({err}); corrupt file") from err
        return payload
