"""Test media for the inference tests: a tiny generator checkpoint, photos and
clips made from scikit-image's bundled photographs (no downloads, no ffmpeg
binary: clips are encoded with PyAV)."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from skimage import data

from sacolor.checkpoint import save_checkpoint
from sacolor.io.video import PIXEL_FORMAT, VIDEO_CODEC
from sacolor.models import build_generator

RENDER = 64
SAMPLE_RATE = 16000
FPS = 12


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: int | Fraction = 25,
    audio: np.ndarray | None = None,
    sample_rate: int = 44100,
) -> None:
    """Encode RGB frames (and optionally mono float audio) as H.264 + AAC.

    Makes test and benchmark clips without an ffmpeg binary.

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


def tiny_checkpoint(path: Path) -> Path:
    """A randomly initialised unet_64 (ngf 4) at 64x64 whose output is clearly coloured.

    The last layer's bias is pushed away from 0 so the predicted ab is large
    (about +-50): that exercises the gamut fitting that keeps L.
    """
    torch.manual_seed(0)
    generator = build_generator("unet_64", ngf=4, input_size=(RENDER, RENDER))
    last = generator.decoder[-1][1]
    with torch.no_grad():
        last.bias.copy_(torch.tensor([0.5, -0.4]))
    config = {"step": 0, "generator": {"name": "unet_64", "kwargs": {"ngf": 4, "input_size": [RENDER, RENDER]}}, "size": [RENDER, RENDER]}
    return save_checkpoint(path, {f"generator.{k}": v for k, v in generator.state_dict().items()}, config)


def photo(name: str = "astronaut", height: int = 72, width: int = 100) -> np.ndarray:
    """A uint8 RGB crop (height, width, 3) of a scikit-image photograph."""
    return np.ascontiguousarray(getattr(data, name)()[:height, :width])


def panning_frames(count: int = 12, height: int = 64, width: int = 96) -> list[np.ndarray]:
    """Frames of a slow pan across the astronaut photo, with a cut to the coffee photo halfway."""
    astronaut, coffee = data.astronaut(), data.coffee()
    frames = []
    for index in range(count):
        source = astronaut if index < count // 2 else coffee
        frames.append(np.ascontiguousarray(source[2 * index : 2 * index + height, 3 * index : 3 * index + width]))
    return frames


def make_clip(path: Path, count: int = 12, audio: bool = True) -> Path:
    """An H.264 clip of ``panning_frames`` at FPS, with a 440 Hz AAC tone when ``audio``."""
    samples = None
    if audio:
        seconds = np.arange(int(SAMPLE_RATE * count / FPS)) / SAMPLE_RATE
        samples = (0.3 * np.sin(2 * np.pi * 440 * seconds)).astype(np.float32)
    write_video(path, panning_frames(count), fps=FPS, audio=samples, sample_rate=SAMPLE_RATE)
    return path


def write_timed_clip(path: Path, times: list[float], frames: list[np.ndarray] | None = None, rotation: int = 0) -> Path:
    """An H.264 clip whose frames carry exactly these presentation times (seconds; a variable frame
    rate when their steps differ), stored with a display rotation of ``rotation`` degrees."""
    frames = frames if frames is not None else panning_frames(len(times))
    with av.open(str(path), "w") as sink:
        stream = sink.add_stream("libx264", rate=FPS)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        for time, pixels in zip(times, frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = round(time * 1000), Fraction(1, 1000)
            sink.mux(stream.encode(frame))
        sink.mux(stream.encode(None))
    return path


def truncated_copy(source: Path, path: Path, fraction: float) -> Path:
    """The first ``fraction`` of ``source``'s bytes: a file cut off as by an interrupted copy."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def audio_packets(path: Path) -> list[tuple[bytes, int | None]]:
    """(payload, pts) of every audio packet, to compare streams bit for bit."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return []
        return [(bytes(p), p.pts) for p in container.demux(container.streams.audio[0]) if p.size]


def frame_times(path: Path) -> list[float]:
    """Presentation time (seconds) of every decoded video frame."""
    with av.open(str(path)) as container:
        return [float(frame.time) for frame in container.decode(video=0)]
