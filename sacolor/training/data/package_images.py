"""Candidate training images inside installed Debian packages: plain image files
and the images inside Qt resource files (``.rcc``), each named by its package,
the file in the package and, for a resource file, the entry inside it."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ...io.paths import IMAGE_SUFFIXES
from .rcc import RccFile

RCC_SUFFIX = ".rcc"


@dataclass(frozen=True)
class PackageImage:
    """One image in a package: ``file`` is the installed path, ``entry`` the path inside
    a resource file (empty for a plain image file)."""

    package: str
    file: str
    entry: str = ""

    @property
    def location(self) -> str:
        """``file`` or ``file:entry``: unique, and what the manifest and reports show."""
        return f"{self.file}:{self.entry}" if self.entry else self.file

    @property
    def name(self) -> str:
        """The image's own file name."""
        return PurePosixPath(self.entry or self.file).name

    def read(self) -> bytes:
        """The image file's bytes.

        Raises:
            FileNotFoundError: the package is not installed (the message says how to install it).
            sacolor.training.data.rcc.RccError: a corrupt resource file.
        """
        path = Path(self.file)
        if not path.is_file():
            raise FileNotFoundError(f"{self.file} is missing: apt-get install --no-install-recommends {self.package}")
        if not self.entry:
            return path.read_bytes()
        rcc = _open_rcc(self.file)
        for found in rcc.entries():
            if found.path == self.entry:
                return rcc.read(found)
        raise FileNotFoundError(f"{self.file} has no entry {self.entry} (another version of {self.package}?)")


@lru_cache(maxsize=2)
def _open_rcc(file: str) -> RccFile:
    # Images are read in package order: one parse per resource file, not per image.
    return RccFile(file)


def package_files(package: str) -> list[Path]:
    """The regular files an installed package put on disk (``dpkg -L``).

    Raises:
        FileNotFoundError: the package is not installed.
    """
    listing = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True)
    if listing.returncode:
        raise FileNotFoundError(
            f"package {package} is not installed: apt-get install --no-install-recommends {package}"
        )
    return sorted(p for p in map(Path, listing.stdout.split("\n")) if p.suffix and p.is_file() and not p.is_symlink())


def package_images(package: str) -> Iterator[PackageImage]:
    """Every raster image file of ``package``, and every raster image inside its resource files."""
    for path in package_files(package):
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            yield PackageImage(package, str(path))
        elif suffix == RCC_SUFFIX:
            for entry in RccFile(path).entries():
                if PurePosixPath(entry.path).suffix.lower() in IMAGE_SUFFIXES:
                    yield PackageImage(package, str(path), entry.path)
