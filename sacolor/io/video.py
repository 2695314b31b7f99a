"""Video I/O with PyAV: decode in batches, sample frames over time, re-encode H.264, keep the audio.

``recolor_video`` is the whole film path of ``sacolor-infer``: it decodes the
source's frames as RGB batches, hands each batch to a callback, and encodes the
callback's frames (H.264, or what the container takes) with the source's own
timestamps, frame rate, frame count, size and display rotation. The first audio
stream is remuxed packet by packet where the container takes it, so the sound
is bit-identical to the source. ``sample_frames`` decodes the frames
the training data takes from a film, a few per second. Nothing here knows about models.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

VIDEO_CODEC = "libx264"
PIXEL_FORMAT = "yuv420p"


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` reads from a video's first video stream.

    Attributes:
        width, height: frame size in pixels.
        frames: frame count from the container, or None when it does not say.
        fps: average frame rate.
        time_base: unit of the stream's timestamps.
        has_audio: whether the file has an audio stream (the first is kept).
        rotation: degrees counter-clockwise players turn the frames (phone videos);
            ``width`` and ``height`` are the stored (coded) frame's.
    """

    width: int
    height: int
    frames: int | None
    fps: Fraction
    time_base: Fraction
    has_audio: bool
    rotation: int = 0

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as players show the frames, after ``rotation``."""
        return (self.height, self.width) if self.rotation % 180 else (self.width, self.height)


def probe(path: str | Path) -> VideoInfo:
    """Read a video's size, frame count, frame rate and whether it has sound.

    Raises:
        ValueError: the file has no video stream or cannot be opened by FFmpeg.
    """
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        return VideoInfo(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            frames=stream.frames or None,
            fps=nominal_rate(stream),
            time_base=Fraction(stream.time_base),
            has_audio=bool(container.streams.audio),
            rotation=_display_rotation(path),
        )


def nominal_rate(stream: av.VideoStream) -> Fraction:
    """The stream's average frame rate, or FFmpeg's guess, or 25: what timestamps are spaced by
    where a stream gives none (AVI) and what output encoders are told."""
    return Fraction(stream.average_rate or stream.guessed_rate or 25)


def frame_times(path: str | Path) -> list[float]:
    """Every video frame's presentation time in seconds from the first frame, in order.

    Read from the packets alone (nothing is decoded), so a variable-frame-rate
    film's times are its own, not the average rate's. Packets without a
    timestamp are placed one average frame after the one before.

    Raises:
        ValueError: the file is not a readable video.
    """
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        step = 1 / float(nominal_rate(stream))
        times: list[float] = []
        for packet in _demux(container, [stream], path):
            if packet.size == 0:  # the demuxer's end-of-stream packet
                continue
            times.append(float(packet.pts * packet.time_base) if packet.pts is not None else (times[-1] + step if times else 0.0))
    times.sort()
    return [t - times[0] for t in times] if times else []


def iter_rgb_batches(path: str | Path, batch_size: int) -> Iterator[np.ndarray]:
    """Decode a video's frames as RGB, ``batch_size`` at a time.

    Yields:
        uint8 arrays (B, H, W, 3), B = batch_size except for the last batch.

    Raises:
        ValueError: the file is not a readable video.
    """
    _check_batch_size(batch_size)
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        batch: list[np.ndarray] = []
        for frame in _decode(container, stream, path):
            batch.append(frame.to_ndarray(format="rgb24"))
            if len(batch) == batch_size:
                yield np.stack(batch)
                batch = []
        if batch:
            yield np.stack(batch)


def iter_timed_frames(path: str | Path) -> Iterator[tuple[int | None, np.ndarray]]:
    """Decode a video's frames in order as (timestamp in the stream's time base or None, uint8 RGB (H, W, 3)).

    Raises:
        ValueError: the file is not a readable video.
    """
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        for frame in _decode(container, stream, path):
            yield frame.pts, frame.to_ndarray(format="rgb24")


def read_frames(path: str | Path, timestamps: Sequence[int | None], first: int, count: int) -> np.ndarray:
    """Frames ``first`` to ``first + count - 1`` of a video, seeking to the key frame before ``first``.

    Args:
        timestamps: every frame's timestamp, in order, as ``iter_timed_frames`` gives them; where
            ``first``'s is None the video is decoded from its start.

    Returns:
        uint8 RGB (count', H, W, 3), count' < count only where the video ends first.

    Raises:
        ValueError: the file is not a readable video.
    """
    target = timestamps[first]
    frames: list[np.ndarray] = []
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        index = 0
        if target is not None:
            container.seek(target, stream=stream, backward=True, any_frame=False)
        for frame in _decode(container, stream, path):
            if target is None:
                keep = index >= first
                index += 1
            else:
                keep = frame.pts is not None and frame.pts >= target
            if keep:
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) == count:
                    break
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)


def sample_frames(path: str | Path, fps: float, keep: Callable[[float, np.ndarray], None]) -> float:
    """Decode a video and hand ``keep`` one frame every 1/fps seconds.

    A frame is taken when its time reaches the next sampling time; after a gap
    in the stream, sampling resumes at the gap's end. Frames without a
    timestamp are skipped.

    Args:
        path: the video.
        fps: frames taken per second of video.
        keep: called in time order with (time in seconds, uint8 RGB (H, W, 3)).

    Returns:
        The duration in seconds: the stream's, or the last frame's time when
        the container does not say.

    Raises:
        ValueError: ``fps`` is not positive, the file is not a readable video,
            or its data is corrupt.
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive; got {fps!r}")
    next_time = last_time = 0.0
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        for frame in _decode(container, stream, path):
            if frame.time is None:
                continue
            last_time = frame.time
            if frame.time + 1e-6 < next_time:
                continue
            keep(frame.time, frame.to_ndarray(format="rgb24"))
            next_time += 1.0 / fps
            while next_time <= frame.time:  # a gap in the stream: sample at its end
                next_time += 1.0 / fps
        return float(stream.duration * stream.time_base) if stream.duration else last_time


def recolor_video(
    src: str | Path,
    dst: str | Path,
    process: Callable[[np.ndarray], np.ndarray],
    batch_size: int = 8,
    on_frames: Callable[[int], None] | None = None,
    crf: int = 18,
) -> int:
    """Re-encode ``src`` into ``dst`` with every frame passed through ``process``.

    The video is encoded at the source's frame rate and size, and every output
    frame carries its source frame's timestamp, so frame count and timing
    match; the source's display rotation (phone videos shot upright) is kept.
    ``dst``'s suffix picks the container, and the container the codecs (see
    ``plan_output``): H.264 where it fits (yuv420p, or yuv444p for an odd width
    or height, which 4:2:0 cannot hold), VP9 for WebM, VP8 for Ogg. The first
    audio stream, if any, is copied packet by packet where the container takes
    its codec, and re-encoded (AAC, Opus or MP2) where it does not.

    Args:
        src: the input video.
        dst: the output path (its parent must exist).
        process: maps uint8 RGB frames (B, H, W, 3) to uint8 RGB frames of the
            same shape. Called in frame order, so it may carry state.
        batch_size: frames per ``process`` call.
        on_frames: called with the number of frames after each batch is
            encoded (progress reporting).
        crf: x264 constant-rate factor (lower is higher quality).

    Returns:
        The number of frames written.

    Raises:
        ValueError: ``src`` is not a readable video, FFmpeg fails to decode or
            encode it, ``dst``'s container takes no codec available here, or
            ``process`` returned frames of the wrong shape or dtype.
    """
    _check_batch_size(batch_size)
    try:
        return _recolor(src, dst, process, batch_size, on_frames, crf)
    except av.FFmpegError as error:
        raise ValueError(f"{src}: FFmpeg failed while re-encoding ({error})") from error


@dataclass(frozen=True)
class OutputPlan:
    """The codecs an output container gets (see ``plan_output``).

    Attributes:
        video: the video encoder, e.g. "libx264".
        pixel_format: e.g. "yuv420p".
        audio: None (no audio), COPY_AUDIO, or the encoder the audio is re-encoded with.
    """

    video: str
    pixel_format: str
    audio: str | None


COPY_AUDIO = "copy"
# Tried in this order; the first the output container takes is used.
VIDEO_ENCODERS = ("libx264", "libvpx-vp9", "libvpx")
AUDIO_ENCODERS = ("aac", "libopus", "mp2")
FRAME_COUNTING = frozenset({"avi"})


def plan_output(dst: str | Path, width: int, height: int, audio: av.AudioStream | None) -> OutputPlan:
    """Choose codecs ``dst``'s container takes, by asking FFmpeg to write its header with them.

    Raises:
        ValueError: the container takes none of ``VIDEO_ENCODERS`` (or, for the
            audio, neither the source's codec nor any of ``AUDIO_ENCODERS``).
    """
    container = _format_name(dst)
    video = next((c for c in VIDEO_ENCODERS if _takes(container, lambda out: _add_video(out, c, width, height, 25, 18))), None)
    if video is None:
        raise ValueError(f"{dst}: {container} files cannot hold {', '.join(VIDEO_ENCODERS)} video; use .mp4 or .mkv")
    plan_audio = None
    if audio is not None:
        if _takes(container, lambda out: out.add_stream_from_template(audio)):
            plan_audio = COPY_AUDIO
        else:
            plan_audio = next((c for c in AUDIO_ENCODERS if _takes(container, lambda out: _add_audio(out, c, audio))), None)
            if plan_audio is None:
                raise ValueError(f"{dst}: {container} files cannot hold this audio or {', '.join(AUDIO_ENCODERS)}; use .mkv")
    return OutputPlan(video, _pixel_format(video, width, height), plan_audio)


def _format_name(dst: str | Path) -> str:
    """FFmpeg's muxer for ``dst``'s suffix (guessed from the name alone; nothing is written)."""
    buffer = io.BytesIO()
    buffer.name = Path(dst).name
    try:
        with av.open(buffer, mode="w") as probe_out:
            return probe_out.format.name
    except (av.FFmpegError, ValueError) as error:
        raise ValueError(f"{dst}: no video container has the suffix {Path(dst).suffix!r}; use .mp4 or .mkv") from error


def _takes(container: str, add: Callable[[av.container.OutputContainer], object]) -> bool:
    """Whether a ``container`` file's header can be written with the stream(s) ``add`` creates."""
    try:
        with av.open(io.BytesIO(), mode="w", format=container) as out:
            add(out)
            out.start_encoding()
        return True
    except (av.FFmpegError, ValueError):
        return False


def _pixel_format(video: str, width: int, height: int) -> str:
    # H.264 in 4:2:0 needs even sides; 4:4:4 (High 4:4:4) keeps an odd size exactly. VP8/9 round chroma up.
    return "yuv444p" if video == "libx264" and (width % 2 or height % 2) else PIXEL_FORMAT


def _add_video(out, encoder: str, width: int, height: int, rate: Fraction, crf: int) -> av.VideoStream:
    stream = out.add_stream(encoder, rate=rate)
    stream.width, stream.height = width, height
    stream.pix_fmt = _pixel_format(encoder, width, height)
    stream.options = {
        # Without timestamps (AVI) B-frames cannot be put back in display order.
        "libx264": {"crf": str(crf), **({"bf": "0"} if out.format.name in FRAME_COUNTING else {})},
        "libvpx-vp9": {"crf": "31", "b": "0", "deadline": "good", "cpu-used": "4"},
        "libvpx": {"crf": "10", "b": "4M"},
    }[encoder]
    return stream


def _add_audio(out, encoder: str, source: av.AudioStream) -> av.AudioStream:
    rates = av.Codec(encoder, "w").audio_rates
    rate = source.rate if not rates or source.rate in rates else min(rates, key=lambda r: abs(r - source.rate))
    return out.add_stream(encoder, rate=rate, layout=source.layout)


def _display_rotation(path: str | Path) -> int:
    """The rotation (degrees counter-clockwise) players apply to the video, from its first frame."""
    with _open_input(path) as container:
        frame = next(_decode(container, _video_stream(container, path), path), None)
        return frame.rotation if frame is not None else 0


def _recolor(src, dst, process, batch_size, on_frames, crf) -> int:
    written = 0
    rotation = _display_rotation(src)
    with _open_input(src) as source:
        video_in = _video_stream(source, src)
        audio_in = source.streams.audio[0] if source.streams.audio else None
        width, height = video_in.codec_context.width, video_in.codec_context.height
        plan = plan_output(dst, width, height, audio_in)
        with av.open(str(dst), mode="w") as sink:
            rate = nominal_rate(video_in)
            video_out = _add_video(sink, plan.video, width, height, rate, crf)
            # AVI counts frames instead of storing timestamps: its unit must be one frame.
            time_base = 1 / rate if sink.format.name in FRAME_COUNTING else Fraction(video_in.time_base)
            video_out.time_base = video_out.codec_context.time_base = time_base
            if rotation:
                video_out.set_display_rotation(rotation)
            audio_out = None
            if plan.audio == COPY_AUDIO:
                audio_out = sink.add_stream_from_template(audio_in)
            elif plan.audio is not None:
                audio_out = _add_audio(sink, plan.audio, audio_in)

            def encode(frames: list[av.VideoFrame]) -> None:
                nonlocal written
                rgb = np.stack([f.to_ndarray(format="rgb24") for f in frames])
                recolored = process(rgb)
                if not isinstance(recolored, np.ndarray) or recolored.shape != rgb.shape or recolored.dtype != np.uint8:
                    raise ValueError(
                        f"process must return a uint8 array of shape {rgb.shape}; got "
                        f"{getattr(recolored, 'dtype', type(recolored))} {getattr(recolored, 'shape', '')}"
                    )
                for frame, pixels in zip(frames, recolored):
                    out = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format=video_out.pix_fmt)
                    out.pts = frame.pts
                    out.time_base = frame.time_base
                    sink.mux(video_out.encode(out))
                written += len(frames)
                if on_frames is not None:
                    on_frames(len(frames))

            pending: list[av.VideoFrame] = []
            first_time = last_time = 0.0  # seconds
            streams = [video_in] + ([audio_in] if audio_in is not None else [])
            # Sources whose frames carry no timestamps get evenly spaced ones.
            next_pts, frame_step = 0, max(1, round(1 / (rate * Fraction(video_in.time_base))))
            for packet in _demux(source, streams, src):
                if packet.stream is audio_in:
                    _pass_audio(packet, audio_out, plan.audio == COPY_AUDIO, sink, src)
                    continue
                for frame in _decode_packet(packet, src):
                    if frame.pts is None:
                        frame.pts = next_pts
                    next_pts = frame.pts + frame_step
                    last_time = float(frame.pts * video_in.time_base)
                    first_time = last_time if written == 0 and not pending else first_time
                    pending.append(frame)
                    if len(pending) == batch_size:
                        encode(pending)
                        pending = []
            if pending:
                encode(pending)
            _check_complete(source, video_in, written, last_time - first_time, src)
            sink.mux(video_out.encode(None))
            if audio_out is not None and plan.audio != COPY_AUDIO:
                sink.mux(audio_out.encode(None))
    return written


def _check_complete(container, stream: av.VideoStream, decoded: int, span: float, path) -> None:
    """Raises ValueError when the frames decoded (``span`` seconds from the first to the last) end well
    before the video's stated duration: a truncated or damaged file, where FFmpeg stops without an error."""
    if decoded == 0:
        raise ValueError(f"{path}: has no video frames that can be decoded; is the file complete?")
    duration = _stated_duration(container, stream)
    # The frames' own spacing: some containers state no usable rate (Ogg gives its time unit).
    step = span / (decoded - 1) if decoded > 1 and span > 0 else 1 / float(nominal_rate(stream))
    covered = span + step  # the last frame lasts about one frame
    # Slack for what a stated duration may also hold: a still held longer at the end, audio.
    if duration is not None and covered < 0.9 * duration - 2 * step:
        expected = stream.frames if stream.frames > decoded else round(duration / step)
        raise ValueError(
            f"{path}: the input ended early: {decoded} frames decoded ({covered:.2f} s) of the {expected} frames "
            f"({duration:.2f} s) it states; the file is truncated or damaged (re-copy or re-download it)"
        )


def _stated_duration(container, stream: av.VideoStream) -> float | None:
    """The video's duration in seconds as its container states it: the stream's own (MP4; Matroska's
    DURATION tag), or the container's when the stream has none."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION", "")
    match = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d*)?)", tag)
    if match:
        return int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3])
    return container.duration / av.time_base if container.duration else None


def _pass_audio(packet: av.Packet, audio_out, copy: bool, sink, path) -> None:
    """Copies an audio packet to the output, or decodes it and encodes it with the output's codec."""
    if packet.dts is None:  # demuxer flush packet: nothing to copy
        return
    if copy:
        packet.stream = audio_out
        sink.mux(packet)
        return
    for frame in _decode_packet(packet, path):
        sink.mux(audio_out.encode(frame))


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")


def _open_input(path: str | Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a readable video ({error})") from error


def _video_stream(container: av.container.InputContainer, path: str | Path) -> av.VideoStream:
    if not container.streams.video:
        raise ValueError(f"{path}: has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _demux(container, streams, path) -> Iterator[av.Packet]:
    try:
        yield from container.demux(*streams)
    except av.FFmpegError as error:
        raise ValueError(f"{path}: corrupt video data ({error})") from error


def _decode_packet(packet: av.Packet, path: str | Path) -> list[av.VideoFrame]:
    try:
        return packet.decode()
    except av.FFmpegError as error:
        raise ValueError(f"{path}: corrupt video data ({error})") from error


def _decode(container, stream, path) -> Iterator[av.VideoFrame]:
    for packet in _demux(container, [stream], path):
        yield from _decode_packet(packet, path)
