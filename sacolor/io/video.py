"""Video I/O with PyAV: decode in batches, sample frames over time, re-encode H.264, keep the audio.

``recolor_video`` is the whole film path of ``sacolor-infer``: it decodes the
source's frames as RGB batches, hands each batch to a callback, and encodes the
callback's frames as H.264 (yuv420p) with the source's own timestamps, frame
rate and frame count. The first audio stream is remuxed packet by packet, so
the sound is bit-identical to the source. ``sample_frames`` decodes the frames
the training data takes from a film, a few per second. Nothing here knows about models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
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
    """

    width: int
    height: int
    frames: int | None
    fps: Fraction
    time_base: Fraction
    has_audio: bool


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
            fps=Fraction(stream.average_rate or stream.guessed_rate or 25),
            time_base=Fraction(stream.time_base),
            has_audio=bool(container.streams.audio),
        )


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

    The video is encoded H.264 yuv420p at the source's frame rate, and every
    output frame carries its source frame's timestamp, so frame count and
    timing match. yuv420p needs even sides, so an odd width or height is padded
    by repeating the last column or row. The first audio stream, if any, is
    copied packet by packet. ``dst``'s suffix picks the container (mp4, mkv, mov, ...).

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
            encode it, or ``process`` returned frames of the wrong shape or dtype.
    """
    _check_batch_size(batch_size)
    try:
        return _recolor(src, dst, process, batch_size, on_frames, crf)
    except av.FFmpegError as error:
        raise ValueError(f"{src}: FFmpeg failed while re-encoding ({error})") from error


def _recolor(src, dst, process, batch_size, on_frames, crf) -> int:
    written = 0
    with _open_input(src) as source, av.open(str(dst), mode="w") as sink:
        video_in = _video_stream(source, src)
        audio_in = source.streams.audio[0] if source.streams.audio else None
        rate = Fraction(video_in.average_rate or video_in.guessed_rate or 25)
        video_out = sink.add_stream(VIDEO_CODEC, rate=rate)
        # yuv420p needs even sides: an odd side gets its last row or column repeated.
        video_out.width = _even(video_in.codec_context.width)
        video_out.height = _even(video_in.codec_context.height)
        video_out.pix_fmt = PIXEL_FORMAT
        video_out.time_base = video_in.time_base
        video_out.codec_context.time_base = video_in.time_base
        video_out.options = {"crf": str(crf)}
        audio_out = sink.add_stream_from_template(audio_in) if audio_in is not None else None

        def encode(frames: list[av.VideoFrame]) -> None:
            nonlocal written
            rgb = np.stack([f.to_ndarray(format="rgb24") for f in frames])
            recolored = process(rgb)
            if not isinstance(recolored, np.ndarray) or recolored.shape != rgb.shape or recolored.dtype != np.uint8:
                raise ValueError(
                    f"process must return a uint8 array of shape {rgb.shape}; got "
                    f"{getattr(recolored, 'dtype', type(recolored))} {getattr(recolored, 'shape', '')}"
                )
            padding = ((0, video_out.height - rgb.shape[1]), (0, video_out.width - rgb.shape[2]), (0, 0))
            for frame, pixels in zip(frames, recolored):
                pixels = np.pad(pixels, padding, mode="edge") if any(p[1] for p in padding) else pixels
                out = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format=PIXEL_FORMAT)
                out.pts = frame.pts
                out.time_base = frame.time_base
                sink.mux(video_out.encode(out))
            written += len(frames)
            if on_frames is not None:
                on_frames(len(frames))

        pending: list[av.VideoFrame] = []
        streams = [video_in] + ([audio_in] if audio_in is not None else [])
        # Sources whose frames carry no timestamps get evenly spaced ones.
        next_pts, frame_step = 0, max(1, round(1 / (rate * Fraction(video_in.time_base))))
        for packet in _demux(source, streams, src):
            if packet.stream is audio_in:
                if packet.dts is None:  # demuxer flush packet: nothing to copy
                    continue
                packet.stream = audio_out
                sink.mux(packet)
                continue
            for frame in _decode_packet(packet, src):
                if frame.pts is None:
                    frame.pts = next_pts
                next_pts = frame.pts + frame_step
                pending.append(frame)
                if len(pending) == batch_size:
                    encode(pending)
                    pending = []
        if pending:
            encode(pending)
        sink.mux(video_out.encode(None))
    return written


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: int | Fraction = 25,
    audio: np.ndarray | None = None,
    sample_rate: int = 44100,
) -> None:
    """Encode RGB frames (and optionally mono float audio) as H.264 + AAC.

    Used to make test clips and benchmark clips without an ffmpeg binary.

    Args:
        path: output file; the suffix picks the container.
        frames: uint8 arrays (H, W, 3), H and W even.
        fps: frame rate.
        audio: float32 samples (S,) in [-1, 1], or None for a silent file.
        sample_rate: audio sample rate in Hz.
    """
    with av.open(str(path), mode="w") as sink:
        video = sink.add_stream(VIDEO_CODEC, rate=Fraction(fps))
        video.pix_fmt = PIXEL_FORMAT
        sound = None
        if audio is not None:
            sound = sink.add_stream("aac", rate=sample_rate, layout="mono")
        for index, pixels in enumerate(frames):
            if index == 0:
                video.height, video.width = pixels.shape[:2]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            sink.mux(video.encode(frame.reformat(format=PIXEL_FORMAT)))
        sink.mux(video.encode(None))
        if sound is not None:
            samples = np.asarray(audio, dtype=np.float32).reshape(1, -1)
            chunk = sound.codec_context.frame_size or 1024
            for start in range(0, samples.shape[1], chunk):
                block = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(samples[:, start : start + chunk]), format="fltp", layout="mono"
                )
                block.sample_rate = sample_rate
                block.pts = start
                sink.mux(sound.encode(block))
            sink.mux(sound.encode(None))


def _even(side: int) -> int:
    return side + side % 2


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
