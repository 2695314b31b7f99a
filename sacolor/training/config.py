"""The trainer's configuration: one dataclass, the report's presets, and
merging defaults < preset < config file (YAML/JSON) < command line."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .losses import GAN_MODES, RECON_LOSSES
from ..models import GENERATORS, PRETRAINED_GENERATOR, UNET_DEPTHS
from ..models.efficientnet import VARIANTS as ENCODERS
from ..models.layers import NORMS

RESIZE_MODES = ("crop", "stretch", "random")
# Bounds that keep a typo (ngf 1e9, size 65536) from becoming an allocation failure
# deep inside the model: far above any configuration that trains in practice.
MAX_CHANNELS = 1024
MAX_SIDE = 8192
# The discriminator's two last 4x4 convs (stride 1, padding 1) need at least this
# many rows and columns left after its stride-2 layers.
DISCRIMINATOR_MIN_FEATURE = 3
AMP_DTYPES = ("bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


def parse_size(value: int | str | Sequence[int]) -> tuple[int, int]:
    """"128" -> (128, 128); "256x512" -> (256, 512) as (H, W); also ints and pairs.

    Raises:
        ValueError: anything else, or non-positive sides.
    """
    if isinstance(value, int):
        pair = (value, value)
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", value)
        if not match:
            raise ValueError(f"size must look like 128 or 256x512 (HxW); got {value!r}")
        pair = (int(match[1]), int(match[2] or match[1]))
    else:
        pair = tuple(int(v) for v in value)
        if len(pair) != 2:
            raise ValueError(f"size must be one side or (H, W); got {value!r}")
    if min(pair) < 1:
        raise ValueError(f"size sides must be positive; got {value!r}")
    return pair


def check_int(option: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` if it is an int (not a bool) in [low, high]; else ValueError naming ``option``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{option} must be an integer; got {value!r} ({type(value).__name__})")
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{option} must be {bound}; got {value}")
    return value


def check_size(option: str, value: Any, multiple: int = 1) -> tuple[int, int]:
    """``value`` as (H, W) if it is a pair of ints in [1, MAX_SIDE] divisible by ``multiple``; else ValueError."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{option} must be [height, width]; got {value!r}")
    pair = (check_int(f"{option} height", value[0], 1, MAX_SIDE), check_int(f"{option} width", value[1], 1, MAX_SIDE))
    if pair[0] % multiple or pair[1] % multiple:
        raise ValueError(f"{option} {pair[0]}x{pair[1]} must be a multiple of {multiple} on both sides")
    return pair


def parse_int_list(value: str | int | Sequence[int] | None) -> tuple[int, ...]:
    """"64" / "32,64" / "" / [32, 64] -> a tuple of ints."""
    if value is None:
        return ()
    if isinstance(value, int):
        return (value,)
    if isinstance(value, str):
        parts = [p for p in re.split(r"[,\s]+", value.strip()) if p]
        try:
            return tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"expected integers separated by commas; got {value!r}") from None
    return tuple(int(v) for v in value)


@dataclass
class TrainConfig:
    """Every option of ``sacolor-train``; the CLI's help text explains each."""

    data: list[str] = field(default_factory=list)
    name: str = "sacolor"
    checkpoints_dir: str = "checkpoints"
    netG: str = "unet_128"
    size: tuple[int, int] = (128, 128)
    resize: str = "crop"
    load_scale: float = 1.12
    flip: bool = True
    ngf: int = 64
    ndf: int = 64
    n_layers_D: int = 3
    norm: str = "batch"
    dropout: bool = True
    gan_mode: str = "vanilla"
    lambda_l1: float = 100.0
    recon_loss: str = "l1"
    batch_size: int = 16
    n_epochs: int = 100
    max_steps: int | None = None
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    sa_sizes: tuple[int, ...] = ()
    sa_sizes_D: tuple[int, ...] = ()
    spectral_norm: bool = False
    amp: bool = False
    amp_dtype: str = "bf16"
    ema: bool = False
    ema_decay: float = 0.999
    seed: int = 0
    eval_every: int = 500
    eval_images: int | None = None
    save_every: int = 1000
    n_samples: int = 8
    val_fraction: float = 0.1
    fps: float = 2.0
    frame_cache: str | None = None
    num_workers: int = 2
    device: str = "auto"
    attention_backend: str = "auto"
    pretrained: bool = True
    encoder: str = "lite0"
    freeze_encoder_steps: int = 0
    encoder_lr_scale: float = 0.1
    gan_start_step: int = 0
    hint_share: float = 0.0
    rebalance: float = 0.0
    lambda_feat: float = 0.0
    progress: bool = True
    resume: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.data, str):
            self.data = [self.data]
        self.data = [str(p) for p in self.data]
        self.size = parse_size(self.size)
        self.sa_sizes = parse_int_list(self.sa_sizes)
        self.sa_sizes_D = parse_int_list(self.sa_sizes_D)
        self.validate()

    def validate(self) -> None:
        """Raises ValueError naming the first bad option and how to fix it."""
        self._check_types()
        for option in ("ngf", "ndf"):
            check_int(f"--{option}", getattr(self, option), 1, MAX_CHANNELS)
        check_size("--size", self.size)
        # Each of the discriminator's stride-2 layers halves the input.
        deepest = max(1, math.floor(math.log2(min(self.size) / DISCRIMINATOR_MIN_FEATURE)))
        check_int(f"--n-layers-D (for --size {self.size[0]}x{self.size[1]})", self.n_layers_D, 1, deepest)
        choices = {
            "netG": (self.netG, tuple(GENERATORS)),
            "encoder": (self.encoder, tuple(ENCODERS)),
            "norm": (self.norm, NORMS),
            "gan_mode": (self.gan_mode, GAN_MODES),
            "recon_loss": (self.recon_loss, RECON_LOSSES),
            "resize": (self.resize, RESIZE_MODES),
            "amp_dtype": (self.amp_dtype, AMP_DTYPES),
            "device": (self.device, DEVICES),
        }
        for option, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"--{_flag(option)} must be one of {', '.join(allowed)}; got {value!r}")
        for option in ("batch_size", "n_epochs", "eval_every", "save_every", "max_steps", "eval_images"):
            if getattr(self, option) is not None:
                check_int(f"--{_flag(option)}", getattr(self, option), 1)
        for option in ("freeze_encoder_steps", "gan_start_step"):
            check_int(f"--{_flag(option)}", getattr(self, option), 0)
        for option in ("hint_share", "rebalance"):
            if not 0.0 <= getattr(self, option) <= 1.0:
                raise ValueError(f"--{_flag(option)} must be in [0, 1]; got {getattr(self, option)}")
        if self.lambda_feat < 0 or self.encoder_lr_scale < 0:
            raise ValueError("--lambda-feat and --encoder-lr-scale must be >= 0")
        if self.netG != PRETRAINED_GENERATOR:
            for option in ("hint_share", "freeze_encoder_steps"):
                if getattr(self, option):
                    raise ValueError(
                        f"--{_flag(option)} needs --netG {PRETRAINED_GENERATOR} (the generator with a pretrained "
                        f"encoder and hint inputs); --netG {self.netG} has neither"
                    )
            if self.encoder != "lite0":
                raise ValueError(
                    f"--encoder {self.encoder} needs --netG {PRETRAINED_GENERATOR}; --netG {self.netG} has no "
                    "pretrained encoder"
                )
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must be in (0, 1); got {self.val_fraction}")
        if self.load_scale < 1.0:
            raise ValueError(f"--load-scale must be >= 1 (it is the crop's slack); got {self.load_scale}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"--ema-decay must be in [0, 1); got {self.ema_decay}")
        if self.fps <= 0:
            raise ValueError(f"--fps must be positive; got {self.fps}")
        for option in ("num_workers", "n_samples"):
            check_int(f"--{_flag(option)}", getattr(self, option), 0)
        multiple = GENERATORS[self.netG]
        if self.size[0] % multiple or self.size[1] % multiple:
            raise ValueError(
                f"--size {self.size[0]}x{self.size[1]} is not divisible by {multiple}, which --netG "
                f"{self.netG} needs: use sides that are multiples of {multiple} or another --netG"
            )

    def _check_types(self) -> None:
        """Each option has its declared type (a config file can give "8" or 1e9 for an int)."""
        kinds = {"int": int, "float": float, "bool": bool, "str": str}
        described = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = kinds.get(f.type.removesuffix(" | None"))
            if kind is None or (value is None and f.type.endswith("| None")):
                continue  # sizes and lists are parsed in __post_init__
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                setattr(self, f.name, value)
            if type(value) is not kind:
                raise ValueError(f"--{_flag(f.name)} must be {described[kind]}; got {value!r} ({type(value).__name__})")
            if kind is float and not math.isfinite(value):
                raise ValueError(f"--{_flag(f.name)} must be a finite number; got {value}")

    def generator_spec(self) -> dict[str, Any]:
        """What ``checkpoint.load_generator`` needs to rebuild G: name and kwargs."""
        if self.netG not in UNET_DEPTHS:
            return {
                "name": self.netG,
                "kwargs": {
                    "sa_sizes": list(self.sa_sizes), "spectral_norm": self.spectral_norm,
                    "input_size": list(self.size),
                    # Only a non-default encoder is named, so Lite0 checkpoints load in older sacolor too.
                    **({"encoder": self.encoder} if self.encoder != "lite0" else {}),
                },
            }
        return {
            "name": self.netG,
            "kwargs": {
                "ngf": self.ngf, "norm": self.norm, "dropout": self.dropout,
                "sa_sizes": list(self.sa_sizes), "spectral_norm": self.spectral_norm,
                "input_size": list(self.size),
            },
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> "TrainConfig":
        """Builds a config; dashes in keys are accepted (``lr-g`` == ``lr_g``).

        Raises:
            ValueError: an unknown key (the message lists the known ones) or a bad value.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        cleaned = {str(k).replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(cleaned) - known)
        if unknown:
            raise ValueError(f"{source}: unknown option(s) {unknown}; known: {sorted(known)}")
        return cls(**cleaned)


def _flag(option: str) -> str:
    return option.replace("_", "-")


_REPORT_BASE = {"netG": "unet_128", "size": (128, 128), "lr_g": 2e-4, "lr_d": 2e-4}
# The report's eight experiments: {no SA, SA at 32, 64, 128} x {log (vanilla), least squares}.
# Its best: expt5, SA at 64^2 with log loss.
PRESETS: dict[str, dict[str, Any]] = {
    f"expt{2 * i + j + 1}": {**_REPORT_BASE, "sa_sizes": sa, "gan_mode": mode}
    for i, sa in enumerate(((), (32,), (64,), (128,)))
    for j, mode in enumerate(("vanilla", "lsgan"))
}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Reads a YAML or JSON mapping of options.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unparsable, or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config {path} does not exist")
    text = path.read_text()
    try:
        values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"--config {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {err}") from err
    if not isinstance(values, dict):
        raise ValueError(f"--config {path} must hold a mapping of option: value; got {type(values).__name__}")
    return values


def merge_config(
    cli: Mapping[str, Any], config_file: str | None = None, preset: str | None = None
) -> TrainConfig:
    """Defaults < ``preset`` < ``config_file`` < the options given on the command line.

    Raises:
        ValueError: an unknown preset or option, or a bad value.
    """
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"--preset must be one of {', '.join(PRESETS)}; got {preset!r}")
        values.update(PRESETS[preset])
    if config_file is not None:
        values.update({str(k).replace("-", "_"): v for k, v in load_config_file(config_file).items()})
    values.update(cli)
    return TrainConfig.from_dict(values, source=config_file or "options")
