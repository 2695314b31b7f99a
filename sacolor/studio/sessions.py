"""Per-browser-session state and files, each session in its own private folder.

The server makes one private folder (mode 0700) for its whole life; each
browser session gets a sub-folder named by a random token (never by anything
the request carries). A session's folder goes when its tab closes
(``SessionStore.close``), and the server's folder when the server stops
(``SessionStore.close_all``).
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .film import FilmEditor
from .photo import PhotoEditor


@dataclass
class Session:
    """What one browser session has open.

    Attributes:
        folder: its private folder; every file the session's page reads or writes lies here.
        photo, film: the photo and film being colourised, if any.
        lock: held while the session's photo or film state changes.
    """

    folder: Path
    photo: PhotoEditor | None = None
    film: FilmEditor | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)

    def path(self, name: str) -> Path:
        """A file of this session; ``name`` is one of the page's own fixed names."""
        return self.folder / name


class SessionStore:
    """The sessions of one server, keyed by Gradio's session id, and their folders.

    Args:
        root: the server's private folder (created with mode 0700 when None).
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sacolor-studio-")) if root is None else root
        self.root.chmod(0o700)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Session:
        """The session ``key``, created (with a fresh folder) on first use."""
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                folder = self.root / f"session-{secrets.token_hex(8)}"
                folder.mkdir(mode=0o700)
                session = self._sessions[key] = Session(folder)
            return session

    def close(self, key: str) -> None:
        """Forgets session ``key`` and removes its folder (its tab was closed)."""
        with self._lock:
            session = self._sessions.pop(key, None)
        if session is not None:
            if session.film is not None:
                session.film.cancel.set()
            shutil.rmtree(session.folder, ignore_errors=True)

    def close_all(self) -> None:
        """Removes every session and the server's folder (the server stops)."""
        for key in list(self._sessions):
            self.close(key)
        shutil.rmtree(self.root, ignore_errors=True)

    def __len__(self) -> int:
        return len(self._sessions)
