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

import errno
import fcntl
import glob
import os
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".jp2"}
)
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".ogv", ".3gp"}
)


# Outputs are written as ".<stem>.<random>.partial<suffix>" beside their target and renamed
# when complete; a killed run can leave one behind. Older versions put "<pid>-" before the
# random part. The stem is shortened where the name would pass the file system's limit.
_PARTIAL = re.compile(r"\..*\.(?:\d+-)?[0-9a-f]+\.partial(?:\.[^.]*)?")
NAME_MAX_BYTES = 255


def partial_path(target: Path) -> Path:
    """A unique temporary name beside ``target`` that keeps its suffix (it picks the format)
    and fits in a file name wherever ``target``'s own name does."""
    tail = f".{secrets.token_hex(4)}.partial{target.suffix}"
    room = NAME_MAX_BYTES - len(tail.encode()) - 1
    stem = target.stem.encode()[:room].decode(errors="ignore")
    return target.with_name(f".{stem}{tail}")


def is_partial(path: Path) -> bool:
    """Whether ``path`` is a temporary output file (see ``partial_path``)."""
    return _PARTIAL.fullmatch(path.name) is not None


@contextmanager
def locked_partial(target: Path) -> Iterator[Path]:
    """Creates a new partial file for ``target`` and holds an exclusive ``flock`` on it while the
    context lasts: the lock, not a process id (which another PID namespace cannot see), is what
    tells a live partial file from a killed run's. Writers open the path again (same inode).

    Raises:
        OSError: the file cannot be created (naming it).
    """
    while True:
        temporary = partial_path(target)
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            # Another run's cleanup may have taken the file between its creation and the lock.
            if os.path.exists(temporary) and os.path.samestat(os.fstat(fd), os.stat(temporary)):
                break
        except OSError:
            pass
        os.close(fd)
    try:
        yield temporary
    finally:
        os.close(fd)


def remove_stale_partials(folder: Path) -> None:
    """Removes the partial files in ``folder`` that no process holds locked (killed runs')."""
    for path in folder.glob(".*.partial*"):
        if not is_partial(path):
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: someone is writing it
            os.close(fd)
            continue
        try:
            if os.path.exists(path) and os.path.samestat(os.fstat(fd), os.stat(path)):
                path.unlink()
        except OSError:
            pass
        finally:
            os.close(fd)


@contextmanager
def atomic_output(target: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it to ``target`` on success.

    The temporary name keeps the suffix (it picks the file format) and is
    locked while it is written (see ``io.paths.locked_partial``). On any error,
    or if ``target`` appeared meanwhile and ``overwrite`` is off, the temporary
    file is removed and nothing is left behind.

    Raises:
        FileExistsError: ``target`` appeared while writing and ``overwrite`` is off.
        OSError: the file system refused the output; the message names ``target`` and the cause.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(target.parent)
        with locked_partial(target) as temporary:
            try:
                yield temporary
                if target.exists() and not overwrite:
                    raise FileExistsError(f"output {target} appeared while writing; pass --overwrite to replace it")
                os.replace(temporary, target)
            finally:
                with suppress(OSError):  # a failed clean-up must not hide why the write failed
                    temporary.unlink(missing_ok=True)
    except OSError as error:
        if error.errno is None or isinstance(error, FileExistsError):
            raise
        raise OSError(f"cannot write {target}: {write_failure(error.errno, error.strerror)}") from error


# Why a file system refuses an output, and what to do about it.
WRITE_FAILURES = {
    errno.EROFS: "the file system is read-only; pass an output on a writable one",
    errno.ENOSPC: "no space left on the device; free some space or pass an output on another drive",
    errno.EDQUOT: "the disk quota is used up; free some space or pass an output on another drive",
    errno.EACCES: "permission denied; check the folder's permissions or pass another output",
    errno.EPERM: "permission denied; check the folder's permissions or pass another output",
    errno.ENAMETOOLONG: "the name is too long for the file system; pass a shorter output name",
}


def write_failure(code: int, strerror: str | None) -> str:
    """The cause of a failed write (``errno`` ``code``) and its fix, in words."""
    return WRITE_FAILURES.get(code, f"{strerror or os.strerror(code)}; check the folder's permissions and free space")


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
