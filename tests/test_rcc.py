"""The Qt resource file reader, on small .rcc files built here in the layout Qt's rcc writes."""

import struct
import zlib

import pytest

from sacolor.training.data.rcc import COMPRESSED, DIRECTORY, MAGIC, RccError, RccFile


def build_rcc(tree: dict, version: int) -> bytes:
    """A resource file holding ``tree`` ({name: bytes | (bytes, "zlib") | dict}), as rcc lays it out:
    entries breadth first (a directory's children consecutive), names and payloads in their own blocks."""
    names, data, entries = bytearray(), bytearray(), []

    def name_offset(name: str) -> int:
        offset = len(names)
        names.extend(struct.pack(">HI", len(name), 0) + name.encode("utf-16-be"))  # rcc's hash is not checked
        return offset

    entries.append(["", DIRECTORY, tree])
    index = 0
    while index < len(entries):
        entry = entries[index]
        _, flags, content = entry
        if flags & DIRECTORY:
            entry.append(len(entries))  # first child's index
            entries.extend([name, DIRECTORY if isinstance(value, dict) else 0, value] for name, value in content.items())
        index += 1
    tree_bytes = bytearray()
    for entry in entries:
        name, flags, content = entry[:3]
        offset = name_offset(name) if name else 0
        if flags & DIRECTORY:
            body = struct.pack(">IHII", offset, flags, len(content), entry[3])
        else:
            raw, compression = content if isinstance(content, tuple) else (content, None)
            payload = struct.pack(">I", len(raw)) + zlib.compress(raw) if compression == "zlib" else raw
            flags = COMPRESSED if compression == "zlib" else 0
            body = struct.pack(">IHHHI", offset, flags, 0, 0, len(data))
            data.extend(struct.pack(">I", len(payload)) + payload)
        tree_bytes.extend(body + (struct.pack(">Q", 0) if version >= 2 else b""))
    header_size = 20 + (4 if version >= 3 else 0)
    tree_at = header_size
    data_at = tree_at + len(tree_bytes)
    names_at = data_at + len(data)
    header = MAGIC + struct.pack(">IIII", version, tree_at, data_at, names_at) + (b"\0\0\0\1" if version >= 3 else b"")
    return header + bytes(tree_bytes) + bytes(data) + bytes(names)


TREE = {
    "top.txt": b"at the root",
    "images": {"photo.webp": (b"RIFF" + bytes(range(256)) * 4, "zlib"), "plain.png": b"\x89PNG not compressed"},
    "deep": {"er": {"leaf.bin": (b"x" * 1000, "zlib")}},
}
EXPECTED = {
    "top.txt": b"at the root",
    "images/photo.webp": b"RIFF" + bytes(range(256)) * 4,
    "images/plain.png": b"\x89PNG not compressed",
    "deep/er/leaf.bin": b"x" * 1000,
}


@pytest.mark.parametrize("version", [1, 2, 3])
def test_reads_every_file_with_its_path_and_bytes(version):
    rcc = RccFile(build_rcc(TREE, version))
    entries = {entry.path: entry for entry in rcc.entries()}
    assert {path: rcc.read(entry) for path, entry in entries.items()} == EXPECTED
    assert entries["images/photo.webp"].compression == "zlib"
    assert entries["images/plain.png"].compression == "none"
    assert rcc.version == version


def test_reads_a_file_from_disk(tmp_path):
    path = tmp_path / "res.rcc"
    path.write_bytes(build_rcc(TREE, 2))
    assert sorted(entry.path for entry in RccFile(path).entries()) == sorted(EXPECTED)


def test_not_a_resource_file():
    with pytest.raises(RccError, match="not a Qt resource file"):
        RccFile(b"RIFF....WEBP")


def test_unsupported_version():
    blob = bytearray(build_rcc(TREE, 2))
    blob[4:8] = struct.pack(">I", 9)
    with pytest.raises(RccError, match="version 9 is not supported"):
        RccFile(bytes(blob))


def test_truncated_file_names_the_problem():
    blob = build_rcc(TREE, 2)
    with pytest.raises(RccError, match="past the end"):
        rcc = RccFile(blob[: len(blob) - 30])  # the names block is cut short
        list(rcc.entries())


def test_corrupt_compressed_payload():
    blob = build_rcc({"a.bin": (b"y" * 500, "zlib")}, 2)
    rcc = RccFile(blob)
    (entry,) = rcc.entries()
    start = rcc.data_offset + entry.data_offset + 4 + 4  # past the length and the size prefix
    broken = bytearray(blob)
    broken[start : start + 6] = b"\xff" * 6
    with pytest.raises(RccError, match="does not decompress"):
        RccFile(bytes(broken)).read(entry)


def test_directory_loop_is_an_error():
    blob = bytearray(build_rcc({"d": {"f": b"1"}}, 1))
    rcc = RccFile(bytes(blob))
    # Point directory "d" (entry 1) at the root (entry 0) as its child.
    struct.pack_into(">I", blob, rcc.tree_offset + 1 * 14 + 10, 0)
    with pytest.raises(RccError, match="loop"):
        list(RccFile(bytes(blob)).entries())
