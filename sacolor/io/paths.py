"""Turn command-line INPUT arguments (files, folders, globs) into media files.

Folders are searched recursively for images and videos; an explicitly named
file is taken whatever its suffix (it fails later, by name, if it is neither).
Each source remembers the path its output should have relative to the output
folder, so a folder's tree is mirrored and every output keeps its input's name.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from .images import IMAGE_SUFFIXES

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".ogv", ".3gp"}
)


@dataclass(frozen=True)
class Source:
    """One input file.

    Attributes:
        path: the file.
        relative: where its output goes, relative to the output folder.
        from_folder: found by searching a folder (rather than named or globbed).
    """

    path: Path
    relative: Path
    from_folder: bool = False

    @property
    def is_video(self) -> bool:
        """Whether to treat the file as a video (by suffix; images are the rest)."""
        return self.path.suffix.lower() in VIDEO_SUFFIXES


def is_media(path: Path) -> bool:
    """Whether a file found in a folder is an image or a video, by its suffix."""
    return path.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES


def collect_sources(arguments: list[str]) -> tuple[list[Source], list[str]]:
    """Expand INPUT arguments into sources, in order, without duplicates.

    Args:
        arguments: paths of files or folders, or glob patterns (``**`` recurses).

    Returns:
        (sources, problems): ``problems`` has one message per argument that
        matched nothing, so the caller can report it and go on with the rest.
    """
    sources: list[Source] = []
    problems: list[str] = []
    seen: set[Path] = set()

    def add(source: Source) -> None:
        key = source.path.resolve()
        if key not in seen:
            seen.add(key)
            sources.append(source)

    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and is_media(p))
            if not found:
                problems.append(f"{argument}: folder holds no images or videos")
            for file in found:
                add(Source(file, file.relative_to(path), from_folder=True))
        elif path.is_file():
            add(Source(path, Path(path.name)))
        elif glob.has_magic(argument):
            matches = sorted(Path(p) for p in glob.glob(argument, recursive=True) if Path(p).is_file())
            if not matches:
                problems.append(f"{argument}: pattern matches no files")
            for file in matches:
                add(Source(file, Path(file.name)))
        else:
            problems.append(f"{argument}: no such file or folder")
    return sources, problems
