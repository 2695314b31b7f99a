"""Running a command where the kernel gives it a file system or PID namespace of its own
(``unshare``), for tests of full disks, read-only outputs and writers that cannot see each
other's processes. Each skips the test where the kernel or sandbox refuses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def with_tmpfs(mount: Path, options: str, command: str, *args: object) -> subprocess.CompletedProcess:
    """Runs the sh ``command`` ($1 is the mount, $2... are ``args``) with a fresh tmpfs mounted on the
    new folder ``mount`` with ``options`` (e.g. "size=64k", "ro"), in a mount namespace of its own."""
    mount.mkdir()
    _skip_without_unshare()
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", 'mount -t tmpfs tmpfs "$1"', "sh", mount], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("this kernel (or sandbox) refuses mount namespaces or tmpfs mounts in them")
    script = f'mount -t tmpfs -o {options} tmpfs "$1" && {command}'
    return subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", mount, *map(str, args)], capture_output=True, text=True)


def skip_without_pid_namespaces() -> None:
    """Skips the test where ``unshare --pid`` is refused."""
    _skip_without_unshare()
    if subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True).returncode != 0:
        pytest.skip("this kernel (or sandbox) refuses new PID namespaces")


def _skip_without_unshare() -> None:
    if shutil.which("unshare") is None:
        pytest.skip("no unshare command (util-linux) here")
