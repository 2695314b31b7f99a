"""The studio's parts that need no browser: sessions and their folders, hint editing, uploads,
the photo and film editors against the command lines' results, and the command without Gradio."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from media import make_clip, panning_frames
from sacolor.cli import studio as studio_cli
from sacolor.inference.colorizer import Colorizer
from sacolor.inference.hints import Hint
from sacolor.inference.photo import colorize_photo
from sacolor.studio.photo import HintList, PhotoEditor
from sacolor.studio.sessions import SessionStore


@pytest.fixture(scope="module")
def builtin() -> Colorizer:
    return Colorizer.from_checkpoint(None, "cpu")


def test_sessions_get_private_folders_that_go_when_they_close(tmp_path):
    store = SessionStore()
    first, second = store.get("tab-1"), store.get("tab-2")
    assert store.get("tab-1") is first and first.folder != second.folder
    assert first.folder.parent == store.root and oct(store.root.stat().st_mode & 0o777) == "0o700"
    assert "tab-1" not in first.folder.name  # folders are named by the server, not by the request
    first.path("photo.png").write_bytes(b"x")
    store.close("tab-1")
    assert not first.folder.exists() and second.folder.exists()
    store.close_all()
    assert not store.root.exists()


def test_hint_list_adds_selects_moves_recolours_and_removes():
    hints = HintList(width=100, height=50)
    hints.add(10, 20, "#3366CC")
    hints.add(30, 40, "c8102e")
    assert [(h.x, h.y, h.colour) for h in hints.items] == [(10, 20, "#3366cc"), (30, 40, "#c8102e")]
    assert hints.selected == 1
    hints.select(0)
    hints.move(11, 21)
    hints.recolour("#00ff00")
    assert hints.items[0] == type(hints.items[0])(11, 21, "#00ff00", 0)
    hints.remove()
    assert [h.x for h in hints.items] == [30] and hints.selected is None
    assert hints.json_entries(with_frames=False) == [{"x": 30, "y": 40, "color": "#c8102e"}]


@pytest.mark.parametrize("rows, message", [
    ([[200, 1, "#000000"]], "outside the 100x50 image"),
    ([[1, 1, "blue"]], "hint 1: 'blue' is not a colour"),
    ([[1, "y", "#000000"]], "hint 1"),
])
def test_hint_table_edits_are_checked_and_named(rows, message):
    hints = HintList(width=100, height=50)
    with pytest.raises(ValueError, match=message):
        hints.replace_all(rows)
    with pytest.raises(ValueError, match="outside"):
        hints.add(100, 0, "#000000")
    film = HintList(width=100, height=50, frames=12)
    with pytest.raises(ValueError, match=r"hint 1: frame 12 is not in the film \(frames 0-11\)"):
        film.replace_all([[12, 1, 1, "#000000"]])
    assert film.items == []


def test_the_photo_editor_gives_what_sacolor_infer_gives(builtin, tmp_path):
    photo = tmp_path / "gray.png"
    Image.fromarray(panning_frames(1, 96, 130)[0]).convert("L").save(photo)
    editor = PhotoEditor(builtin, photo)
    editor.hints.add(20, 30, "#3366cc")
    editor.hints.add(100, 60, "#c8102e")
    editor.render()
    hints = [Hint(20, 30, (0x33, 0x66, 0xCC)), Hint(100, 60, (0xC8, 0x10, 0x2E))]
    assert np.array_equal(editor.result, colorize_photo(builtin, photo, hints))
    assert json.loads(editor.save_hints(tmp_path / "h.json").read_text())[1] == {"x": 100, "y": 60, "color": "#c8102e"}
    assert editor.colour_at(20, 30) == "#{:02x}{:02x}{:02x}".format(*editor.result[30, 20])


def test_the_film_editor_finds_the_cut_and_shows_any_frame(builtin, tmp_path):
    from sacolor.studio.film import FilmEditor

    clip = make_clip(tmp_path / "clip.mp4", count=12)
    scanned = []
    editor = FilmEditor(builtin, clip, on_scan=scanned.append)
    assert editor.frames == 12 and scanned[-1] == 12
    assert editor.shots == [0, 6] and editor.shot_of(7) == (6, 11)
    from sacolor.io.video import iter_rgb_batches

    decoded = np.concatenate(list(iter_rgb_batches(clip, 4)))
    assert np.array_equal(editor.frame(9), decoded[9])
    editor.hints.add(40, 30, "#8040c0", frame=2)
    assert editor.points_on(1) == [] and len(editor.points_on(5)) == 1
    assert editor.points_on(6) == []  # cleared at the cut, as the render clears it


def test_uploads_are_limited_and_stored_under_fixed_names(tmp_path):
    pytest.importorskip("gradio")
    from sacolor.studio.page import take_upload

    (tmp_path / "root").mkdir()
    store = SessionStore(tmp_path / "root")
    session = store.get("tab")
    upload = tmp_path / "..evil name.PNG"
    upload.write_bytes(b"\0" * 3000)
    assert take_upload(str(upload), session, "photo", frozenset({".png"}), 1.0) == session.folder / "photo.png"
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 2 * 2**20)
    with pytest.raises(ValueError, match=r"up to 1 MB \(start it with --max-upload-mb N"):
        take_upload(str(big), session, "photo", frozenset({".png"}), 1.0)


def test_the_command_without_gradio_says_what_to_install(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    assert studio_cli.main(["--no-browser"]) == 2
    assert 'pip install "sacolor[studio]"' in capsys.readouterr().err


def test_a_cancelled_render_leaves_no_film(builtin, tmp_path):
    from sacolor.studio.film import FilmEditor, RenderCancelled

    editor = FilmEditor(builtin, make_clip(tmp_path / "clip.mp4", count=12))
    target = tmp_path / "out.mp4"
    with pytest.raises(RenderCancelled):
        editor.render(target, tmp_path / "plot.png", on_frames=lambda _: editor.cancel.set())
    assert not target.exists() and not list(tmp_path.glob("partial-*"))
