"""Hints on films: the hints file, carrying points by the flow on L (motion, occlusion, leaving
the frame, scene cuts, replacement by id), and a hint on a moving object through a real H.264 clip,
by the library and by ``sacolor-infer``."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import color, data
from torch import nn

from hint_spy import spy_on_hints
from media import panning_frames, write_timed_clip, write_video
from sacolor.checkpoint import save_checkpoint
from sacolor.inference.colorizer import Colorizer
from sacolor.inference.film import FilmColorizer, FilmHint, HintTracker, displayed_point, load_film_hints, schedule, stored_point
from sacolor.inference.hints import Hint
from sacolor.cli.infer import main as infer
from sacolor.io.video import VideoInfo, frame_times, iter_rgb_batches, recolor_video
from sacolor.models import build_generator
from sacolor.inference.temporal import ChromaStabilizer

HEIGHT, WIDTH, SIDE = 64, 96, 24  # the clip, and the side of the square object that moves across it
CUT, FRAMES = 10, 14  # frames 0-9: one shot; 10-13: the object goes on over another background
STEP = (3, 1)  # the object's motion, (x, y) pixels per frame
HINT_COLOUR, HINT_RGB = "#228b22", (0x22, 0x8B, 0x22)  # forest green: ab about (-49, 45), in gamut on the object
TOLERANCE = 3.0  # Lab units: mean ab on the object within this of the hint's ab


def corner(t: int) -> tuple[int, int]:
    """(x, y) of the object's top-left corner in frame t: the known motion."""
    return 8 + STEP[0] * t, 16 + STEP[1] * t


def centre(t: int) -> tuple[int, int]:
    x, y = corner(t)
    return x + SIDE // 2, y + SIDE // 2


def moving_object_frames() -> list[np.ndarray]:
    """A square of cat's fur moving over a gray photo (camera), then on over another (coffee) after a cut."""
    backgrounds = [data.camera()[200 : 200 + HEIGHT, 150 : 150 + WIDTH], color.rgb2gray(data.coffee())[100 : 100 + HEIGHT, 200 : 200 + WIDTH] * 255]
    thing = data.chelsea()[264 : 264 + SIDE, 336 : 336 + SIDE]  # fur, L 44-71
    frames = []
    for t in range(FRAMES):
        frame = np.repeat(backgrounds[t >= CUT].astype(np.uint8)[..., None], 3, axis=-1)
        x, y = corner(t)
        frame[y : y + SIDE, x : x + SIDE] = thing
        frames.append(frame)
    return frames


def lightness(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack([color.rgb2lab(f)[..., :1] for f in frames])).permute(0, 3, 1, 2).float()


def first_frame_hint(key: str | None = None, frame: int = 0) -> FilmHint:
    x, y = centre(frame)
    return FilmHint(Hint(x, y, HINT_RGB), frame=frame, key=key)


def test_points_follow_the_object_and_clear_at_the_cut():
    tracker = HintTracker({0: [first_frame_hint()]})
    points = tracker(lightness(moving_object_frames()))
    for t in range(CUT):
        assert len(points[t]) == 1
        assert abs(points[t][0].x - centre(t)[0]) < 0.5 and abs(points[t][0].y - centre(t)[1]) < 0.5, t
        assert points[t][0].rgb == HINT_RGB
    assert all(p == [] for p in points[CUT:])


def test_a_later_hint_with_the_same_id_replaces_and_others_add():
    blue = FilmHint(Hint(*centre(4), (0, 0, 255)), frame=4, key="thing")
    other = FilmHint(Hint(80, 5, (0, 255, 0)), frame=4)
    points = HintTracker({0: [first_frame_hint("thing")], 4: [blue, other]})(lightness(moving_object_frames()[:6]))
    assert [p.rgb for p in points[3]] == [HINT_RGB]
    assert sorted(p.rgb for p in points[5]) == [(0, 0, 255), (0, 255, 0)]


def test_a_covered_point_is_dropped_and_so_is_one_that_leaves_the_frame():
    photo = torch.from_numpy(color.rgb2lab(data.astronaut()[100:200, 100:300])[..., :1]).permute(2, 0, 1).float()
    pan = torch.stack([photo[:, :HEIGHT, 3 * t : 3 * t + WIDTH] for t in range(7)])  # the scene moves 3 px left a frame
    pan[4:, :, 36:, 56:] = 100.0  # from frame 4 a white card hides the bottom right
    covered, leaving, visible = (Hint(80, 50, (0, 0, 255)), Hint(4, 10, (0, 255, 0)), Hint(40, 20, (255, 0, 0)))
    points = HintTracker({0: [FilmHint(covered), FilmHint(leaving), FilmHint(visible)]})(pan)
    assert [p.rgb for p in points[1]] == [covered.rgb, leaving.rgb, visible.rgb]
    assert [p.rgb for p in points[2]] == [covered.rgb, visible.rgb]  # x = 4 - 2 * 3 < 0: left the frame
    assert [p.rgb for p in points[3]] == [covered.rgb, visible.rgb] and points[3][0].x == pytest.approx(71, abs=0.5)
    assert [p.rgb for p in points[4]] == [visible.rgb]  # under the card: the occlusion check fails
    assert points[6][0].x == pytest.approx(40 - 6 * 3, abs=0.5) and points[6][0].y == pytest.approx(20, abs=0.5)


def test_a_cut_clears_points_even_where_the_picture_around_them_stays():
    photo = lightness([data.astronaut()[:HEIGHT, :WIDTH]])[0]
    other = lightness([data.coffee()[:HEIGHT, :WIDTH]])[0]
    cut = other.clone()
    cut[:, 10:40, 20:60] = photo[:, 10:40, 20:60]  # the point's surroundings stay; the rest (over half) changes
    points = HintTracker({0: [FilmHint(Hint(40, 25, HINT_RGB))]})(torch.stack([photo, photo, cut]))
    assert len(points[1]) == 1 and points[2] == []


def video_info(width: int, height: int, frames: int | None, rotation: int = 0) -> VideoInfo:
    return VideoInfo(width, height, frames, Fraction(24), Fraction(1, 24), False, rotation)


def entries_file(tmp_path, entries) -> str:
    path = tmp_path / "hints.json"
    path.write_text(json.dumps(entries))
    return str(path)


def test_hints_file_frames_times_and_ids(tmp_path):
    path = entries_file(tmp_path, {"hints": [
        {"frame": 3, "x": 1, "y": 2, "color": "#010203", "id": "coat"},
        {"time": 2.5, "x": 4, "y": 5, "color": "#ffffff"},
        {"x": 6, "y": 7, "color": "#000000", "id": 7},
    ]})
    hints = load_film_hints(path)
    assert [(h.frame, h.time, h.key) for h in hints] == [(3, None, "coat"), (None, 2.5, None), (0, None, "7")]
    assert hints[0].hint == Hint(1.0, 2.0, (1, 2, 3)) and hints[1].source.endswith("entry 1")
    starts = schedule(hints, video_info(10, 10, 100), "v.mp4", times=[t / 24 for t in range(100)])
    assert sorted(starts) == [0, 3, 60]  # 2.5 s at 24 fps is frame 60


@pytest.mark.parametrize("entry, message", [
    ({"frame": -1, "x": 1, "y": 1, "color": "#ffffff"}, '"frame" must be a frame number >= 0'),
    ({"frame": 1.5, "x": 1, "y": 1, "color": "#ffffff"}, '"frame" must be a frame number'),
    ({"time": "1s", "x": 1, "y": 1, "color": "#ffffff"}, '"time" must be seconds >= 0'),
    ({"frame": 1, "time": 1, "x": 1, "y": 1, "color": "#ffffff"}, 'give "frame" or "time", not both'),
    ({"id": [1], "x": 1, "y": 1, "color": "#ffffff"}, '"id" must be a name or a number'),
    ({"x": 1, "y": 1, "color": "red"}, "is not a colour"),
    ({"x": 1, "color": "#ffffff"}, 'expected {"x"'),
    # Issue 18, items 10 and 11: read as #123456; collided with "True"; an OverflowError traceback.
    ({"x": 1, "y": 1, "color": 123456}, '"color" must be a string such as "#3366cc"; got 123456'),
    ({"id": True, "x": 1, "y": 1, "color": "#ffffff"}, '"id" must be a name or a number; got True'),
    ({"x": 10**400, "y": 1, "color": "#ffffff"}, "x is far outside any image; got a 401-digit number"),
])
def test_bad_hints_files_name_the_entry(tmp_path, entry, message):
    path = entries_file(tmp_path, [{"x": 0, "y": 0, "color": "#000000"}, entry])
    with pytest.raises(ValueError, match="entry 1") as error:
        load_film_hints(path)
    assert message in str(error.value)


@pytest.mark.parametrize("entry, message", [
    ({"x": 10, "y": 3, "color": "#ffffff"}, "is outside the 10x10 image"),
    ({"frame": 100, "x": 1, "y": 1, "color": "#ffffff"}, "starts at frame 100, but the video has 100 frames"),
    ({"time": 5, "x": 1, "y": 1, "color": "#ffffff"}, "starts at time 5 s, but the video has 100 frames"),
])
def test_hints_that_do_not_fit_the_video_are_refused(tmp_path, entry, message):
    hints = load_film_hints(entries_file(tmp_path, [entry]))
    with pytest.raises(ValueError, match="entry 0") as error:
        schedule(hints, video_info(10, 10, 100), "v.mp4", times=[t / 24 for t in range(100)])
    assert message in str(error.value) and "v.mp4" in str(error.value)


class HintSpreader(nn.Module):
    """A stand-in generator that follows hints exactly: each pixel within SPREAD of a hint gets the
    hint's ab, every other pixel ab = 0. What a trained hint model does around a hint, without training."""

    accepts_hints = True
    multiple = 1
    SPREAD = 10

    def forward(self, l_norm: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:
        if hints is None:
            return torch.zeros_like(l_norm).expand(-1, 2, -1, -1)
        side = 2 * self.SPREAD + 1
        pooled = F.avg_pool2d(torch.cat([hints[:, :2] * hints[:, 2:], hints[:, 2:]], 1), side, 1, self.SPREAD)
        return pooled[:, :2] / pooled[:, 2:].clamp_min(1e-6)


def object_ab(path) -> list[np.ndarray]:
    """Mean ab of the middle of the object in every frame of a video, found by the known motion."""
    frames = np.concatenate(list(iter_rgb_batches(path, 8)))
    means = []
    for t, frame in enumerate(frames):
        x, y = corner(t)
        means.append(color.rgb2lab(frame[y + 6 : y + SIDE - 6, x + 6 : x + SIDE - 6]).reshape(-1, 3)[:, 1:].mean(0))
    return means


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("film") / "object.mp4"
    write_video(path, moving_object_frames(), fps=12)
    return path


# The shipped model is no ideal spreader: it blends the hint into its own guess, so it gets a wider
# tolerance (without the hint its object is ~67 Lab units away, the spreader's ~44).
BUILTIN_TOLERANCE = 20.0


def spreader() -> Colorizer:
    return Colorizer(HintSpreader(), (HEIGHT, WIDTH), torch.device("cpu"))


def builtin() -> Colorizer:
    return Colorizer.from_checkpoint(None, "cpu", (HEIGHT, WIDTH))


@pytest.mark.parametrize("model, tolerance, apart", [(spreader, TOLERANCE, 5 * TOLERANCE),
                                                     (builtin, BUILTIN_TOLERANCE, 2 * BUILTIN_TOLERANCE)])
@pytest.mark.parametrize("hinted", [True, False])
def test_a_hint_on_frame_0_colours_the_moving_object_until_the_cut(clip, tmp_path, hinted, model, tolerance, apart):
    starts = {0: [first_frame_hint()]} if hinted else None
    film = FilmColorizer(model(), ChromaStabilizer(), starts)
    assert recolor_video(clip, tmp_path / "out.mp4", film, batch_size=4) == FRAMES
    hinted_ab = color.rgb2lab(np.array([[HINT_RGB]], np.uint8))[0, 0, 1:]
    distances = [float(np.linalg.norm(ab - hinted_ab)) for ab in object_ab(tmp_path / "out.mp4")]
    if hinted:
        assert max(distances[:CUT]) < tolerance, distances
    else:
        assert min(distances[:CUT]) > apart, distances
    assert min(distances[CUT:]) > apart, distances  # after the cut the hint no longer applies


@pytest.fixture(scope="module")
def hint_checkpoint(tmp_path_factory):
    """An untrained efficientnet_unet at 64x96: it takes hints, which is all the CLI test needs."""
    torch.manual_seed(0)
    kwargs = {"input_size": [HEIGHT, WIDTH]}
    generator = build_generator("efficientnet_unet", **kwargs)
    config = {"step": 0, "generator": {"name": "efficientnet_unet", "kwargs": kwargs}, "size": [HEIGHT, WIDTH]}
    path = tmp_path_factory.mktemp("hint_model") / "model"
    return save_checkpoint(path, {f"generator.{k}": v for k, v in generator.state_dict().items()}, config)


def test_cli_carries_film_hints_to_the_model(clip, hint_checkpoint, tmp_path, monkeypatch):
    seen = spy_on_hints(monkeypatch)
    x, y = centre(0)
    hints = entries_file(tmp_path, [{"frame": 0, "x": x, "y": y, "color": HINT_COLOUR}])
    status = infer([str(clip), "-o", str(tmp_path / "out.mp4"), "--checkpoint", str(hint_checkpoint),
                    "--hints", hints, "--batch-size", "4", "--quiet"])
    assert status == 0 and (tmp_path / "out.mp4").is_file()
    masks = torch.cat(seen)[:, 2]
    assert masks.shape == (FRAMES, HEIGHT, WIDTH)
    for t in range(CUT):
        rows, cols = torch.nonzero(masks[t], as_tuple=True)
        assert len(rows) == 9 and (cols.float().mean(), rows.float().mean()) == pytest.approx(centre(t), abs=1), t
    assert masks[CUT:].sum() == 0
    assert (torch.cat(seen)[:CUT, 0][masks[:CUT] > 0] < 0).all()  # green: a < 0


@pytest.mark.parametrize("entry, status, message", [
    ({"x": 96, "y": 3, "color": "#ffffff"}, 1, "entry 0: hint at (96, 3) is outside the 96x64 image"),
    ({"frame": 14, "x": 1, "y": 1, "color": "#ffffff"}, 1, "the video has 14 frames"),
    ({"x": 1, "y": 1, "color": "#fffff"}, 2, "entry 0: '#fffff' is not a colour"),
])
def test_cli_refuses_bad_film_hints_by_name(clip, hint_checkpoint, tmp_path, capsys, entry, status, message):
    hints = entries_file(tmp_path, [entry])
    code = infer([str(clip), "-o", str(tmp_path / "out.mp4"), "--checkpoint", str(hint_checkpoint), "--hints", hints, "--quiet"])
    error = capsys.readouterr().err
    assert code == status and message in error and hints in error
    assert list(tmp_path.glob("*.mp4")) == []


def test_cli_refuses_frame_hints_for_images(hint_checkpoint, tmp_path, capsys):
    from PIL import Image

    Image.fromarray(moving_object_frames()[0]).save(tmp_path / "photo.png")
    hints = entries_file(tmp_path, [{"frame": 5, "x": 1, "y": 1, "color": "#ffffff"}])
    code = infer([str(tmp_path / "photo.png"), "-o", str(tmp_path / "out.png"), "--checkpoint", str(hint_checkpoint), "--hints", hints])
    assert code == 2 and "only videos have" in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


# Frames 0-7 a second apart at first, then ten a second: the average rate (14 frames in 3.6 s) puts
# 3.0 s at frame 10, the timestamps at frame 8.
VFR_TIMES = [0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.1, 3.2, 3.3, 3.4, 3.5]


def hinted_frames(seen: list) -> list[int]:
    """The frames whose hint channels hold a point, from ``spy_on_hints``."""
    masks = torch.cat(seen)[:, 2]
    return [t for t in range(len(masks)) if masks[t].sum() > 0]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_hint_by_time_starts_at_the_frame_of_that_time_in_a_variable_rate_film(hint_checkpoint, tmp_path, monkeypatch, suffix):
    # Issue 18, item 3: converted with the average fps, a hint at 3.0 s started at frame 11 (3.12 s)
    # in an mp4, and in an mkv (no frame count) never, with exit status 0.
    frames = [panning_frames(14)[0]] * 14  # one shot throughout: the point is never cleared
    film = write_timed_clip(tmp_path / f"vfr{suffix}", VFR_TIMES, frames)
    assert frame_times(film) == pytest.approx(VFR_TIMES, abs=1e-3)
    seen = spy_on_hints(monkeypatch)
    hints = entries_file(tmp_path, [{"time": 3.0, "x": 40, "y": 30, "color": HINT_COLOUR}])
    status = infer([str(film), "-o", str(tmp_path / f"out{suffix}"), "--checkpoint", str(hint_checkpoint),
                    "--hints", hints, "--batch-size", "4", "--quiet"])
    assert status == 0
    assert hinted_frames(seen) == list(range(8, 14))


def test_a_hint_past_the_end_of_a_film_without_a_frame_count_is_reported(hint_checkpoint, tmp_path, capsys):
    # Issue 18, item 4: Matroska states no frame count, and the hint was silently ignored (exit 0).
    film = write_timed_clip(tmp_path / "film.mkv", [t / 12 for t in range(14)])
    hints = entries_file(tmp_path, [{"frame": 20, "x": 1, "y": 1, "color": HINT_COLOUR}])
    status = infer([str(film), "-o", str(tmp_path / "out.mkv"), "--checkpoint", str(hint_checkpoint),
                    "--hints", hints, "--quiet"])
    error = capsys.readouterr().err
    assert status == 1 and "entry 0: starts at frame 20, but the video has 14 frames (0 to 13)" in error
    assert not (tmp_path / "out.mkv").exists() and not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_a_displayed_point_is_the_same_pixel_of_the_stored_frame(rotation):
    stored = np.arange(5 * 7).reshape(5, 7)  # height 5, width 7
    displayed = np.rot90(stored, rotation // 90)  # what players show: turned counter-clockwise
    for y, x in np.ndindex(displayed.shape):
        point = stored_point(Hint(x, y, (0, 0, 0)), rotation, width=7, height=5)
        assert stored[int(point.y), int(point.x)] == displayed[y, x]
        back = displayed_point(point, rotation, width=7, height=5)  # what the studio, showing stored frames, saves
        assert (back.x, back.y) == (x, y)


def test_film_hints_are_in_the_displayed_pixels_of_a_rotated_film(hint_checkpoint, tmp_path, monkeypatch, capsys):
    # Issue 18, item 5: on a film with display rotation 90 (stored 96x64, shown 64x96) a point inside
    # the displayed frame was refused as outside the 96x64 image, and another landed elsewhere.
    film = write_timed_clip(tmp_path / "phone.mp4", [t / 12 for t in range(4)], [panning_frames(1)[0]] * 4, rotation=90)
    seen = spy_on_hints(monkeypatch)
    hints = entries_file(tmp_path, [{"x": 50, "y": 80, "color": HINT_COLOUR}])  # inside 64 wide x 96 tall
    status = infer([str(film), "-o", str(tmp_path / "out.mp4"), "--checkpoint", str(hint_checkpoint),
                    "--hints", hints, "--quiet"])
    assert status == 0, capsys.readouterr().err
    rows, cols = torch.nonzero(torch.cat(seen)[0, 2], as_tuple=True)
    # Displayed (x 50, y 80) is stored (x 96 - 1 - 80, y 50): players turn the stored frame 90 degrees
    # counter-clockwise, so the stored frame's right edge is the displayed top.
    assert (cols.float().mean().item(), rows.float().mean().item()) == pytest.approx((15, 50), abs=1)
    hints = entries_file(tmp_path, [{"x": 70, "y": 10, "color": HINT_COLOUR}])
    assert infer([str(film), "-o", str(tmp_path / "out2.mp4"), "--checkpoint", str(hint_checkpoint),
                  "--hints", hints, "--quiet"]) == 1
    assert "hint at (70, 10) is outside the 64x96 image" in capsys.readouterr().err
