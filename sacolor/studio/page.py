"""The studio's web page (Gradio): a Photo tab and a Film tab, wired to the editors.

Every handler finds its session by Gradio's session id and works only inside
that session's folder, under the page's own fixed file names: an uploaded
file is moved there as ``photo<suffix>`` or ``film<suffix>``, and nothing a
request says becomes a path. Pictures go to the browser as previews
(``pictures``); clicks on them are mapped back to the picture's pixels.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import gradio as gr

from ..inference.colorizer import Colorizer
from ..io.paths import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from .film import FilmEditor, RenderCancelled
from .photo import HintList, PhotoEditor, hex_colour
from .pictures import clicked_pixel, photo_pictures, preview, with_markers
from .sessions import Session, SessionStore

# The flicker report is a text table: it needs a fixed-width font.
CSS = "#film-flicker textarea { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; font-size: 13px; }"
CLICK_ADDS, CLICK_MOVES = "adds a hint", "moves the selected hint"
PHOTO_HEADERS = ["x", "y", "colour"]
FILM_HEADERS = ["frame", "x", "y", "colour"]

INTRO = """# sacolor studio
Colourise a black-and-white **photo** or **film**. The model guesses the colours; where it is wrong,
**click the picture** at that spot and **pick the colour** it should be: the result follows.
Click first and the hint takes the colour the model gives that spot; then change it with the colour picker."""


def table(hints: HintList, with_frames: bool) -> list[list]:
    """The hints as the page's table shows them."""
    return [[h.frame, h.x, h.y, h.colour] if with_frames else [h.x, h.y, h.colour] for h in hints.items]


def take_upload(upload: str | None, session: Session, stem: str, suffixes: frozenset[str], limit_mb: float) -> Path:
    """Moves an uploaded file into the session's folder under a fixed name.

    Raises:
        ValueError: no file, or one larger than the limit (the message names the option).
    """
    if not upload:
        raise ValueError("no file was received")
    source = Path(upload)
    size = source.stat().st_size
    if size > limit_mb * 2**20:
        source.unlink(missing_ok=True)
        raise ValueError(f"{source.name} is {size / 2**20:.1f} MB; this studio takes files up to {limit_mb:g} MB "
                         "(start it with --max-upload-mb N to change that)")
    suffix = source.suffix.lower() if source.suffix.lower() in suffixes else ""
    target = session.path(f"{stem}{suffix}")
    for old in session.folder.glob(f"{stem}*"):
        old.unlink()
    shutil.move(source, target)
    return target


def build(colorizer: Colorizer, store: SessionStore, max_upload_mb: float) -> gr.Blocks:
    """The studio's page."""

    def photo_view(session: Session, message: str = ""):
        editor = session.photo
        if editor is None:
            return None, None, [], message, gr.update(), None, None
        selected = editor.hints.items[editor.hints.selected].colour if editor.hints.selected is not None else gr.update()
        # The saved files no longer match once the hints change: Save makes new ones.
        return (*photo_pictures(editor), table(editor.hints, False), message, selected, None, None)

    def open_photo(upload, request: gr.Request):
        session = store.get(request.session_hash)
        with session.lock:
            session.photo = None
            try:
                path = take_upload(upload, session, "photo", IMAGE_SUFFIXES, max_upload_mb)
                session.photo = PhotoEditor(colorizer, path)
            except (ValueError, OSError, MemoryError) as error:
                name = Path(upload).name if upload else "the file"
                return (*photo_view(session, f"**Could not open {name}:** {error}. Open a photo (JPEG, PNG, TIFF, ...)."), None)
            width, height = session.photo.size
            return (*photo_view(session, f"{Path(upload).name}: {width} x {height} pixels. Click the photo where you "
                                         "know the colour."), None)

    def click_photo(mode: str, colour: str, chosen: bool, event: gr.SelectData, request: gr.Request):
        session = store.get(request.session_hash)
        with session.lock:
            editor = session.photo
            if editor is None:
                return (*photo_view(session, "Open a photo first."), chosen)
            x, y = clicked_pixel(event.index, *editor.size)
            try:
                if mode == CLICK_MOVES and editor.hints.selected is not None:
                    editor.hints.move(x, y)
                else:
                    editor.hints.add(x, y, colour if chosen and colour else editor.colour_at(x, y))
                editor.render()
            except ValueError as error:
                return (*photo_view(session, f"**{error}**"), chosen)
            return (*photo_view(session, f"Hint at ({x}, {y}). Change its colour with the colour picker."), False)

    def pick_colour(colour: str, request: gr.Request):
        """A colour picked for the selected hint, or, with none selected, for the next click."""
        session = store.get(request.session_hash)
        with session.lock:
            editor = session.photo
            if editor is None or editor.hints.selected is None or not colour:
                return (*photo_view(session, "The next click places a hint of this colour."), True)
            if editor.hints.items[editor.hints.selected].colour == colour.lower():
                return (*[gr.skip()] * 7, False)  # the page showing the selected hint's own colour
            editor.hints.recolour(colour)
            editor.render()
            return (*photo_view(session), False)

    def edit_photo_table(rows, request: gr.Request):
        session = store.get(request.session_hash)
        with session.lock:
            editor = session.photo
            if editor is None:
                return photo_view(session)
            try:
                editor.hints.replace_all(_rows(rows))
                editor.render()
            except ValueError as error:
                return photo_view(session, f"**{error}**")
            return photo_view(session)

    def select_photo_hint(event: gr.SelectData, request: gr.Request):
        session = store.get(request.session_hash)
        with session.lock:
            if session.photo is not None:
                session.photo.hints.select(event.index[0])
            return photo_view(session, "Selected: change its colour, remove it, or choose 'moves the selected hint' and click.")

    def remove_photo_hint(request: gr.Request):
        session = store.get(request.session_hash)
        with session.lock:
            if session.photo is not None and session.photo.hints.selected is not None:
                session.photo.hints.remove()
                session.photo.render()
            return photo_view(session)

    def save_photo(request: gr.Request):
        session = store.get(request.session_hash)
        with session.lock:
            if session.photo is None:
                raise gr.Error("Open a photo first.")
            return (str(session.photo.save_png(session.path("colourised.png"))),
                    str(session.photo.save_hints(session.path("hints.json"))))

    # --- film ---

    def film_view(session: Session, index: int, message: str = ""):
        editor = session.film
        if editor is None:
            return None, None, [], message, gr.update()
        rgb, colour, points = editor.preview(index)
        first, last = editor.shot_of(index)
        placed_here = {(float(h.x), float(h.y)) for h in editor.hints.items if h.frame == index}
        carried = [p for p in points if (p.x, p.y) not in placed_here]
        shots = ", ".join(f"{a}-{b}" for a, b in (editor.shot_of(s) for s in editor.shots))
        here = f" {len(carried)} hint(s) carried here from earlier frames of this shot." if carried else ""
        status = (f"Frame {index} of 0-{editor.frames - 1}, shot {editor.shots.index(first) + 1} of {len(editor.shots)} "
                  f"(frames {first}-{last}; shots: {shots}).{here} {message}")
        selected = editor.hints.items[editor.hints.selected].colour if editor.hints.selected is not None else gr.update()
        return with_markers(rgb, editor.hints, index, carried), preview(colour), table(editor.hints, True), status, selected

    def open_film(upload, request: gr.Request, progress=gr.Progress()):
        session = store.get(request.session_hash)
        with session.lock:
            session.film = None
            try:
                path = take_upload(upload, session, "film", VIDEO_SUFFIXES, max_upload_mb)
                progress(0, desc="finding the shots")
                session.film = FilmEditor(colorizer, path, on_scan=lambda n: progress((n, None), desc="finding the shots", unit="frames"))
            except (ValueError, OSError, MemoryError) as error:
                name = Path(upload).name if upload else "the file"
                return (*film_view(session, 0, f"**Could not open {name}:** {error}. Open a film (MP4, MKV, MOV, ...)."),
                        gr.update(maximum=1, value=0), None)
            return (*film_view(session, 0, f"{Path(upload).name}: scrub to a frame and click where you know the colour."),
                    gr.update(minimum=0, maximum=session.film.frames - 1, value=0, step=1), None)

    def scrub(index, request: gr.Request):
        session = store.get(request.session_hash)
        with session.lock:
            return film_view(session, int(index))

    def click_film(index, mode: str, colour: str, chosen: bool, event: gr.SelectData, request: gr.Request):
        session = store.get(request.session_hash)
        index = int(index)
        with session.lock:
            editor = session.film
            if editor is None:
                return (*film_view(session, index, "Open a film first."), chosen)
            x, y = clicked_pixel(event.index, editor.info.width, editor.info.height)
            try:
                if mode == CLICK_MOVES and editor.hints.selected is not None:
                    editor.hints.move(x, y, index)
                else:
                    if not (chosen and colour):
                        colour = hex_colour(tuple(int(v) for v in editor.preview(index)[1][y, x]))
                    editor.hints.add(x, y, colour, index)
            except ValueError as error:
                return (*film_view(session, index, f"**{error}**"), chosen)
            return (*film_view(session, index, f"Hint at ({x}, {y}) from frame {index} to the end of its shot."), False)

    def pick_film_colour(index, colour: str, request: gr.Request):
        session = store.get(request.session_hash)
        with session.lock:
            editor = session.film
            if editor is None or editor.hints.selected is None or not colour:
                return (*film_view(session, int(index), "The next click places a hint of this colour."), True)
            if editor.hints.items[editor.hints.selected].colour == colour.lower():
                return (*[gr.skip()] * 5, False)  # the page showing the selected hint's own colour
            editor.hints.recolour(colour)
            return (*film_view(session, int(index)), False)

    def edit_film_table(index, rows, request: gr.Request):
        session = store.get(request.session_hash)
        with session.lock:
            editor = session.film
            if editor is None:
                return film_view(session, int(index))
            try:
                editor.hints.replace_all(_rows(rows))
            except ValueError as error:
                return film_view(session, int(index), f"**{error}**")
            return film_view(session, int(index))

    def select_film_hint(index, event: gr.SelectData, request: gr.Request):
        session = store.get(request.session_hash)
        with session.lock:
            if session.film is not None:
                session.film.hints.select(event.index[0])
            return film_view(session, int(index))

    def remove_film_hint(index, request: gr.Request):
        session = store.get(request.session_hash)
        with session.lock:
            if session.film is not None:
                session.film.hints.remove()
            return film_view(session, int(index))

    def render_film(request: gr.Request, progress=gr.Progress()):
        session = store.get(request.session_hash)
        editor = session.film
        if editor is None:
            raise gr.Error("Open a film first.")
        done = 0

        def advance(frames: int) -> None:
            nonlocal done
            done += frames
            progress((done, editor.frames), desc="colourising", unit="frames")

        progress((0, editor.frames), desc="colourising", unit="frames")
        try:
            report = editor.render(session.path("colourised.mp4"), session.path("flicker.png"), advance)
        except RenderCancelled:
            return None, None, None, "Render cancelled.", None
        except (ValueError, OSError) as error:
            return None, None, None, f"**Render failed:** {error}", None
        hints = editor.save_hints(session.path("film_hints.json"))
        return (str(session.path("colourised.mp4")), str(hints), str(session.path("flicker.png")),
                "Rendered. Flicker report (sacolor-eval --no-truth figures; lower warp error and CDC are steadier):",
                report)

    def cancel_render(request: gr.Request):
        session = store.get(request.session_hash)
        if session.film is not None:
            session.film.cancel.set()

    with gr.Blocks(title="sacolor studio", delete_cache=(600, 3600)) as page:
        gr.Markdown(INTRO)
        limit = f"up to {max_upload_mb:g} MB; sacolor-studio --max-upload-mb N changes that"
        with gr.Tab("Photo"):
            chosen = gr.State(False)
            photo_file = gr.File(label=f"Open a photo: drop it here or click ({limit})", elem_id="photo-upload", height=120)
            photo_message = gr.Markdown(elem_id="photo-message")
            with gr.Row():
                original = gr.Image(label="Your photo: click where you know the colour", interactive=False,
                                    format="png", elem_id="photo-original", buttons=[])
                result = gr.Image(label="Colourised", interactive=False, format="jpeg", elem_id="photo-result", buttons=[])
            with gr.Row():
                photo_colour = gr.ColorPicker(label="Hint colour", elem_id="photo-colour")
                photo_mode = gr.Radio([CLICK_ADDS, CLICK_MOVES], value=CLICK_ADDS, label="A click on the photo")
                remove_photo = gr.Button("Remove the selected hint")
            photo_table = gr.Dataframe(headers=PHOTO_HEADERS, datatype=["number", "number", "str"], interactive=True,
                                       label="Hints (pixels from the top-left; click a row to select it, edit a cell to move or recolour)",
                                       elem_id="photo-hints", column_count=3)
            with gr.Row():
                save_button = gr.Button("Save the colourised PNG and the hints", variant="primary", elem_id="photo-save")
            with gr.Row():
                png_file = gr.File(label="Colourised PNG (full resolution)", elem_id="photo-png", interactive=False)
                hints_file = gr.File(label="Hints (sacolor-infer --hints FILE.json)", elem_id="photo-hints-json", interactive=False)

            outputs = [original, result, photo_table, photo_message, photo_colour, png_file, hints_file]
            photo_file.upload(open_photo, [photo_file], outputs + [photo_file])
            original.select(click_photo, [photo_mode, photo_colour, chosen], outputs + [chosen])
            photo_colour.change(pick_colour, [photo_colour], outputs + [chosen])
            photo_table.input(edit_photo_table, [photo_table], outputs)
            photo_table.select(select_photo_hint, None, outputs)
            remove_photo.click(remove_photo_hint, None, outputs)
            save_button.click(save_photo, None, [png_file, hints_file])

        with gr.Tab("Film"):
            film_chosen = gr.State(False)
            film_file = gr.File(label=f"Open a film: drop it here or click ({limit})", elem_id="film-upload", height=120)
            film_message = gr.Markdown(elem_id="film-message")
            frame = gr.Slider(0, 1, value=0, step=1, label="Frame", elem_id="film-frame")
            with gr.Row():
                film_original = gr.Image(label="Frame: click where you know the colour", interactive=False, format="png",
                                         elem_id="film-original", buttons=[])
                film_result = gr.Image(label="Colourised (preview; the render also smooths flicker)", interactive=False,
                                       format="jpeg", elem_id="film-result", buttons=[])
            with gr.Row():
                film_colour = gr.ColorPicker(label="Hint colour", elem_id="film-colour")
                film_mode = gr.Radio([CLICK_ADDS, CLICK_MOVES], value=CLICK_ADDS, label="A click on the frame")
                remove_film = gr.Button("Remove the selected hint")
            film_table = gr.Dataframe(headers=FILM_HEADERS, datatype=["number", "number", "number", "str"], interactive=True,
                                      label="Hints (each holds from its frame to the end of its shot, following the motion)",
                                      elem_id="film-hints", column_count=4)
            with gr.Row():
                render_button = gr.Button("Render the whole film", variant="primary", elem_id="film-render")
                cancel_button = gr.Button("Cancel", variant="stop", elem_id="film-cancel")
            render_message = gr.Markdown(elem_id="film-render-message")
            with gr.Row():
                film_out = gr.File(label="Colourised film (MP4, sound kept)", elem_id="film-mp4", interactive=False)
                film_hints_file = gr.File(label="Hints (sacolor-infer --hints FILE.json)", elem_id="film-hints-json", interactive=False)
            flicker_text = gr.Textbox(label="Flicker report", lines=9, interactive=False, elem_id="film-flicker")
            flicker_plot = gr.Image(label="Flicker per frame", interactive=False, elem_id="film-flicker-plot", buttons=[])

            film_outputs = [film_original, film_result, film_table, film_message, film_colour]
            film_file.upload(open_film, [film_file], film_outputs + [frame, film_file])
            frame.input(scrub, [frame], film_outputs, trigger_mode="always_last")  # drags and typed numbers
            film_original.select(click_film, [frame, film_mode, film_colour, film_chosen], film_outputs + [film_chosen])
            film_colour.change(pick_film_colour, [frame, film_colour], film_outputs + [film_chosen])
            film_table.input(edit_film_table, [frame, film_table], film_outputs)
            film_table.select(select_film_hint, [frame], film_outputs)
            remove_film.click(remove_film_hint, [frame], film_outputs)
            render_button.click(render_film, None, [film_out, film_hints_file, flicker_plot, render_message, flicker_text])
            cancel_button.click(cancel_render, None, None)

        def close_session(request: gr.Request) -> None:
            store.close(request.session_hash)

        page.unload(close_session)
    return page


def _rows(rows) -> list[list]:
    """A Dataframe's value (pandas, or lists) as lists of cells, blank rows dropped."""
    values = rows.values.tolist() if hasattr(rows, "values") else list(rows or [])
    return [row for row in values if any(str(cell).strip() not in ("", "nan", "None") for cell in row)]
