"""Which files are images and videos (by suffix), and finding them: folder
searches and the expansion of command-line INPUT arguments (files, folders, globs).

The suffix sets here are the only ones: training, inference and evaluation all
decide "image or video" with them. Folders are searched recursively; an
explicitly named file is taken whatever its suffix (it fails later, by name, if
it is neither). Each source remembers the path its output should have relative
to the output folder, so a folder's tree is mirrored and every output keeps its
input's name.
"""

from __future__ import annotations

import glob
import os
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".jp2"}
)
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".ogv", ".3gp"}
)


# Outputs are written as ".<stem>.<pid>-<random>.partial<suffix>" beside their target and
# renamed when complete; a killed run can leave one behind.
_PARTIAL = re.compile(r"\.(?P<stem>.*)\.(?P<pid>\d+)-[0-9a-f]+\.partial(?P<suffix>\.[^.]*)?")


def partial_path(target: Path) -> Path:
    """A unique temporary name beside ``target`` that keeps its suffix (it picks the format)."""
    return target.with_name(f".{target.stem}.{os.getpid()}-{secrets.token_hex(4)}.partial{target.suffix}")


def is_partial(path: Path) -> bool:
    """Whether ``path`` is a temporary output file (see ``partial_path``)."""
    return _PARTIAL.fullmatch(path.name) is not None


def remove_stale_partials(target: Path) -> None:
    """Removes partial files of ``target`` whose writing process no longer runs (a killed run's)."""
    for path in target.parent.glob(f".{glob.escape(target.stem)}.*.partial{glob.escape(target.suffix)}"):
        match = _PARTIAL.fullmatch(path.name)
        if match is not None and match["stem"] == target.stem and not _process_exists(int(match["pid"])):
            path.unlink(missing_ok=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def atomic_output(target: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it to ``target`` on success.

    The temporary name keeps the suffix (it picks the file format). On any
    error, or if ``target`` appeared meanwhile and ``overwrite`` is off, the
    temporary file is removed and nothing is left behind.

    Raises:
        FileExistsError: ``target`` appeared while writing and ``overwrite`` is off.
    """
    temporary = partial_path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(target)
        yield temporary
        if target.exists() and not overwrite:
            raise FileExistsError(f"output {target} appeared while writing; pass --overwrite to replace it")
        os.replace(temporary, target)
    except OSError as error:
        if error.errno is None or isinstance(error, FileExistsError):
            raise
        raise OSError(error.errno, f"cannot write {target} ({error.strerror}); check the folder's permissions and free space") from error
    finally:
        temporary.unlink(missing_ok=True)


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
        return is_video(self.path)


def is_image(path: str | Path) -> bool:
    """Whether a file is an image, by its suffix (see ``IMAGE_SUFFIXES``)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_video(path: str | Path) -> bool:
    """Whether a file is a video, by its suffix (see ``VIDEO_SUFFIXES``)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def is_media(path: str | Path) -> bool:
    """Whether a file is an image or a video, by its suffix."""
    return is_image(path) or is_video(path)


def find_files(folder: str | Path, wanted: Callable[[Path], bool]) -> list[Path]:
    """The files under ``folder`` (recursive) for which ``wanted`` is true, sorted; never partial outputs."""
    return sorted(p for p in Path(folder).rglob("*") if wanted(p) and not is_partial(p) and p.is_file())


def find_images(folder: str | Path) -> list[Path]:
    """Every image file under ``folder`` (recursive), sorted; suffixes in ``IMAGE_SUFFIXES``."""
    return find_files(folder, is_image)


def suffix_list(suffixes: frozenset[str]) -> str:
    """Suffixes for a message, e.g. "bmp/gif/jpeg/..."."""
    return "/".join(sorted(s.lstrip(".") for s in suffixes))


def suffix_help() -> str:
    """One sentence for a CLI's help: which suffixes make a file an image or a video."""
    return (
        f"Files in folders count by suffix (any case): images {suffix_list(IMAGE_SUFFIXES)}; "
        f"videos {suffix_list(VIDEO_SUFFIXES)}."
    )


def expand_glob(pattern: str) -> list[Path]:
    """The files a glob pattern matches (``**`` recurses), sorted; hidden and partial files are left out.

    Unlike ``glob.glob``, ``**`` does not descend into symlinked folders, so a
    symlink loop cannot make the search endless (pathlib's rule).
    """
    parts = Path(pattern).parts
    literal = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    root = Path(*parts[:literal]) if literal else Path()
    rest = Path(*parts[literal:]).as_posix()
    return sorted(
        path for path in root.glob(rest)
        if not any(part.startswith(".") for part in path.relative_to(root).parts) and path.is_file()
    )


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
            found = find_files(path, is_media)
            if not found:
                problems.append(f"{argument}: folder holds no images or videos")
            for file in found:
                add(Source(file, file.relative_to(path), from_folder=True))
        elif path.is_file():
            add(Source(path, Path(path.name)))
        elif glob.has_magic(argument):
            matches = expand_glob(argument)
            if not matches:
                problems.append(f"{argument}: pattern matches no files")
            for file in matches:
                add(Source(file, Path(file.name)))
        else:
            problems.append(f"{argument}: no such file or folder")
    return sources, problems
