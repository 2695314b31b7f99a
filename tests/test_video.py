"""sacolor.io.video: frame count, timestamps and audio survive a re-encode.

Oracles: the source file itself (its decoded timestamps and its audio packets,
read independently with PyAV) and the callback's known effect (inversion).
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from media import FPS, audio_packets, frame_times, make_clip, panning_frames, truncated_copy, write_timed_clip, write_video

from sacolor.io.paths import VIDEO_SUFFIXES
from sacolor.io.video import iter_rgb_batches, probe, recolor_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("video") / "clip.mp4", count=10)


def test_probe_reads_size_rate_and_audio(clip):
    info = probe(clip)
    assert (info.width, info.height, info.frames, info.fps, info.has_audio) == (96, 64, 10, Fraction(FPS), True)


def test_batches_cover_every_frame_in_order(clip):
    batches = list(iter_rgb_batches(clip, batch_size=4))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert batches[0].dtype == np.uint8 and batches[0].shape[1:] == (64, 96, 3)


def test_recolor_keeps_frames_timestamps_and_audio(clip, tmp_path):
    calls = []

    def invert(frames):
        calls.append(len(frames))
        return 255 - frames

    out = tmp_path / "inverted.mp4"
    written = recolor_video(clip, out, invert, batch_size=3)
    assert written == 10 and calls == [3, 3, 3, 1]
    assert frame_times(out) == frame_times(clip)
    assert probe(out).fps == Fraction(FPS)
    source_audio = audio_packets(clip)
    assert source_audio and audio_packets(out) == source_audio
    before = np.concatenate(list(iter_rgb_batches(clip, 10))).astype(int)
    after = np.concatenate(list(iter_rgb_batches(out, 10))).astype(int)
    assert np.abs((255 - before) - after).mean() < 4  # only H.264 loss


def test_silent_video_stays_silent(tmp_path):
    clip = make_clip(tmp_path / "silent.mkv", count=5, audio=False)
    out = tmp_path / "out.mkv"
    assert recolor_video(clip, out, lambda f: f, batch_size=8) == 5
    assert not probe(out).has_audio and len(frame_times(out)) == 5


def test_wrong_callback_output_is_refused(clip, tmp_path):
    with pytest.raises(ValueError, match="uint8 array of shape"):
        recolor_video(clip, tmp_path / "bad.mp4", lambda f: f.astype(np.float32))


def test_corrupt_file_is_named(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    with pytest.raises(ValueError, match="broken.mp4"):
        probe(broken)
    with pytest.raises(ValueError, match="broken.mp4"):
        recolor_video(broken, tmp_path / "out.mp4", lambda f: f)


def test_odd_frame_size_is_kept(tmp_path):
    # Issue 12, item 10: 4:2:0 cannot hold 45x31, so the output was padded to 46x32; H.264 4:4:4 can.
    odd = tmp_path / "odd.mkv"
    frames = [np.full((31, 45, 3), 40 * i, dtype=np.uint8) for i in range(4)]
    with av.open(str(odd), "w") as sink:
        stream = sink.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 45, 31, "yuv420p"
        for pixels in frames:
            sink.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")))
        sink.mux(stream.encode(None))
    out = tmp_path / "out.mkv"
    assert recolor_video(odd, out, lambda f: f) == 4
    info = probe(out)
    assert (info.width, info.height) == (45, 31)
    assert frame_times(out) == frame_times(odd)
    decoded = np.concatenate(list(iter_rgb_batches(out, 4))).astype(int)
    assert np.abs(decoded - np.stack(frames)).mean() < 2


def test_display_rotation_is_kept(tmp_path):
    # Issue 12, item 7: a phone video stored landscape with "rotate 90" played sideways after colourising.
    portrait = write_timed_clip(tmp_path / "phone.mp4", [t / 10 for t in range(4)], panning_frames(4), rotation=90)
    assert probe(portrait).rotation == 90 and probe(portrait).display_size == (64, 96)
    out = tmp_path / "out.mp4"
    assert recolor_video(portrait, out, lambda f: f) == 4
    with av.open(str(out)) as container:
        assert next(container.decode(video=0)).rotation == 90


@pytest.mark.parametrize("fraction, message", [
    (0.7, r"the input ended early: 6 frames decoded \(0.50 s\) of the 12 frames \(1.00 s\) it states"),
    (0.3, "has no video frames that can be decoded"),
])
def test_a_truncated_film_is_an_error_not_a_short_film(tmp_path, fraction, message):
    # Issue 18, item 8: a truncated mkv was written with 3 of its 12 frames, exit 0, no word.
    whole = tmp_path / "whole.mkv"
    write_video(whole, panning_frames(12), fps=12)
    cut = truncated_copy(whole, tmp_path / "cut.mkv", fraction)
    with pytest.raises(ValueError, match=f"cut.mkv: {message}"):
        recolor_video(cut, tmp_path / "out.mkv", lambda f: f)
    assert recolor_video(whole, tmp_path / "out.mkv", lambda f: f) == 12


@pytest.mark.parametrize("suffix", sorted(VIDEO_SUFFIXES))
def test_every_video_suffix_can_be_written(clip, tmp_path, suffix):
    # Issue 12, item 11: .webm, .ogv and .mpg (with AAC audio) outputs always failed at encode time.
    out = tmp_path / f"out{suffix}"
    assert recolor_video(clip, out, lambda f: f, batch_size=4) == 10
    info = probe(out)
    assert (info.width, info.height, info.has_audio) == (96, 64, True)
    assert sum(len(batch) for batch in iter_rgb_batches(out, 4)) == 10
    if suffix != ".wmv":  # known: ASF's millisecond timestamps make libx264 refuse a second pass
        assert recolor_video(out, tmp_path / f"again{suffix}", lambda f: f) == 10  # an output is a usable input


def test_avi_keeps_the_frame_rate_and_count(clip, tmp_path):
    # AVI counts frames: with the source's 1/12288 time unit it was written at 600 fps, 49 of
    # every 50 frames empty, and B-frames came back out of order.
    out = tmp_path / "out.avi"
    recolor_video(clip, out, lambda f: f)
    assert probe(out).fps == Fraction(FPS)
    times = frame_times(out)
    assert len(times) == 10 and times == sorted(times)
    assert np.allclose(np.diff(times), 1 / FPS)


def test_an_unknown_container_is_refused_by_name(clip, tmp_path):
    with pytest.raises(ValueError, match=r"out.xyz: no video container has the suffix '.xyz'"):
        recolor_video(clip, tmp_path / "out.xyz", lambda f: f)
    assert not (tmp_path / "out.xyz").exists()
