"""A package image's licence, as its Debian copyright file (machine-readable, DEP-5) states it."""

from __future__ import annotations

from fnmatch import fnmatch
from functools import lru_cache
from pathlib import Path, PurePosixPath

COPYRIGHT = "/usr/share/doc/{}/copyright"
# Source files are often converted on the way into the package (a .jpg becomes a .webp).
SOURCE_SUFFIXES = (".jpg", ".jpeg", ".png", ".svg", ".webp")


@lru_cache(maxsize=None)
def _stanzas(package: str) -> tuple[tuple[tuple[str, ...], str], ...]:
    """(file patterns, licence name) of each ``Files:`` stanza, in file order."""
    path = Path(COPYRIGHT.format(package))
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: apt-get install --no-install-recommends {package}")
    stanzas = []
    for block in path.read_text(encoding="utf-8", errors="replace").split("\n\n"):
        patterns: list[str] = []
        licence = None
        field = None
        for line in block.splitlines():
            if line[:1] not in (" ", "\t"):
                field, _, value = line.partition(":")
                if field == "Files":
                    patterns += value.split()
                elif field == "License" and licence is None:
                    licence = value.strip()
            elif field == "Files":
                patterns += line.split()
        if patterns and licence:
            stanzas.append((tuple(patterns), licence))
    return tuple(stanzas)


def _matches(pattern: str, path: PurePosixPath) -> bool:
    names = [path.with_suffix(suffix) for suffix in (path.suffix, *SOURCE_SUFFIXES)]
    if any(fnmatch(str(PurePosixPath(*n.parts[k:])), pattern) for n in names for k in range(len(n.parts))):
        return True
    # Installed folders differ from the source tree's: a plain file name matches by name.
    base = PurePosixPath(pattern).name
    return "*" not in base and "?" not in base and any(n.name == base for n in names)


def package_licence(package: str, path: str) -> str:
    """The licence of ``path`` (installed path, or source-tree path of a resource-file entry) in
    ``package``'s copyright file: the last stanza whose ``Files`` pattern matches, as DEP-5 says.

    Raises:
        FileNotFoundError: the package's copyright file is missing (not installed).
        ValueError: no stanza matches.
    """
    target = PurePosixPath(path.lstrip("/"))
    found = None
    for patterns, licence in _stanzas(package):
        if any(_matches(pattern, target) for pattern in patterns):
            found = licence
    if found is None:
        raise ValueError(f"{COPYRIGHT.format(package)} has no Files stanza for {path}")
    return found
