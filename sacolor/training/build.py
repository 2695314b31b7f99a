"""Building a training run: device, data, models, optimisers and losses, from a ``TrainConfig``."""

from __future__ import annotations

import os
import random
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ..checkpoint import check_checkpoint_dir, load_generator
from ..models import PRETRAINED_GENERATOR, build_discriminator, build_generator
from ..models.consensus import ConsensusGenerator
from ..options import autocast_dtype, resolve_device
from .config import TrainConfig
from .data.dataset import ColorizationDataset, PairTransform
from .data.sampler import ResumableSampler
from .data.splits import collect_splits
from .losses import ColourRebalance, FeatureLoss, GANLoss, ab_histogram
from .run import EMA, TrainingRun, log_line
from .state import resume_run

# Random training crops whose ab histogram is the colour prior of ``--rebalance``.
PRIOR_SAMPLES = 64
PRIOR_BINS = 32


def training_precision(config: TrainConfig, device: torch.device, rank: int) -> torch.dtype | None:
    """The mixed-precision type of ``--amp`` on ``device`` (None: float32), saying why when it differs.

    Weights stay float32 (the master copy the optimiser updates); autocast runs
    convolutions, matmuls and the attention in the 16-bit type. On CPU that is
    bf16, whose attention runs the cpu kernel's bf16 tiles (AMX or vdpbf16ps
    where the CPU has them); inference keeps ``autocast_dtype``'s float32 there.
    """
    if not config.amp:
        return None
    if device.type == "cpu":
        if config.amp_dtype != "bf16":
            log_line(rank, "--amp on CPU uses bf16 (float16 has no fast CPU kernels)")
        return torch.bfloat16
    dtype = autocast_dtype(device, config.amp_dtype)
    if config.amp_dtype == "bf16" and dtype == torch.float16:
        log_line(rank, "this GPU has no bfloat16; --amp uses float16 with loss scaling")
    return dtype


def data_splits(config: TrainConfig, rank: int, world_size: int) -> tuple[list[Path], list[Path]]:
    """(train, held-out) files; only rank 0 extracts video frames, the others then read its cache."""
    cover = tuple(round(s * config.load_scale) for s in config.size)
    cache = config.frame_cache or str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sacolor" / "frames")
    if rank == 0:
        splits = collect_splits(config.data, config.val_fraction, config.fps, cache, cover)
    if world_size > 1:
        dist.barrier()
    if rank != 0:
        splits = collect_splits(config.data, config.val_fraction, config.fps, cache, cover)
    return splits


def colour_prior(train_set: ColorizationDataset, seed: int) -> torch.Tensor:
    """The ab histogram of ``PRIOR_SAMPLES`` seeded random training crops (the global RNG is untouched)."""
    seeds = torch.randint(2**62, (PRIOR_SAMPLES,), generator=torch.Generator().manual_seed(seed)).tolist()
    counts = torch.zeros(PRIOR_BINS, PRIOR_BINS, dtype=torch.float64)
    for index, sample_seed in enumerate(seeds):
        ab = train_set[(index % len(train_set), sample_seed)]["ab"]
        counts += ab_histogram(ab[None], PRIOR_BINS)
    return counts


def generator_optimizer(G: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam over G; a pretrained encoder learns at ``encoder_lr_scale`` times the decoder's rate."""
    betas = (config.beta1, config.beta2)
    encoder = list(G.encoder.parameters()) if hasattr(G, "encoder") else []
    if not encoder:
        return torch.optim.Adam(G.parameters(), lr=config.lr_g, betas=betas)
    encoder_ids = {id(p) for p in encoder}
    rest = [p for p in G.parameters() if id(p) not in encoder_ids]
    return torch.optim.Adam(
        [{"params": rest}, {"params": encoder, "lr": config.lr_g * config.encoder_lr_scale}], lr=config.lr_g, betas=betas
    )


def build_run(config: TrainConfig, rank: int = 0, world_size: int = 1) -> TrainingRun:
    """Data, models, optimisers and losses for ``config``; resumed when ``config.resume``.

    Raises:
        ValueError / FileNotFoundError: bad data, a batch size larger than the
            training set, a missing pretrained-weights package, or ``resume``
            without a checkpoint.
    """
    device = resolve_device(config.device)
    run_dir = Path(config.checkpoints_dir) / config.name
    if rank == 0:
        check_checkpoint_dir(run_dir)  # before any step is spent, not at the first save
    train_paths, test_paths = data_splits(config, rank, world_size)
    transform = dict(resize=config.resize, load_scale=config.load_scale, flip=config.flip,
                     min_area=config.min_crop_area, close_up_share=config.close_up_share,
                     close_up_area=config.close_up_area)
    train_set = ColorizationDataset(train_paths, PairTransform(config.size, True, **transform))
    sampler = ResumableSampler(train_set, world_size, rank, shuffle=True, seed=config.seed)
    steps_per_epoch = sampler.num_samples // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"--batch-size {config.batch_size} is larger than the {sampler.num_samples} training "
            f"images each of the {world_size} process(es) gets; lower --batch-size or add images"
        )
    loader = DataLoader(
        train_set, batch_size=config.batch_size, sampler=sampler, drop_last=True,
        num_workers=config.num_workers, persistent_workers=config.num_workers > 0,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),  # keeps the global RNG untouched by loader iterators
    )

    torch.manual_seed(config.seed)  # identical initial weights on every rank
    spec = config.generator_spec()
    extra = {"pretrained": config.pretrained} if config.netG == PRETRAINED_GENERATOR else {}
    try:
        G = build_generator(spec["name"], **spec["kwargs"], **extra, attention_backend=config.attention_backend)
        feature_loss = FeatureLoss().to(device) if config.lambda_feat else None
    except ImportError as err:
        raise ValueError(f"{err} (or train with --no-pretrained and --lambda-feat 0)") from err
    if config.init_from:
        fresh = start_from(G, config.init_from)
        log_line(rank, f"--init-from {config.init_from}: G starts from its weights"
                 + (f", except {len(fresh)} tensors of another name or shape: {', '.join(fresh)}" if fresh else ""))
    G = G.to(device)
    D = build_discriminator(
        ndf=config.ndf, n_layers=config.n_layers_D, norm=config.norm, sa_sizes=config.sa_sizes_D,
        spectral_norm=config.spectral_norm, input_size=config.size, attention_backend=config.attention_backend,
    ).to(device)
    ema = EMA(G, config.ema_decay) if config.ema else None
    opt_G = generator_optimizer(G, config)
    opt_D = torch.optim.Adam(D.parameters(), lr=config.lr_d, betas=(config.beta1, config.beta2))
    dtype = training_precision(config, device, rank)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    rebalance = ColourRebalance(colour_prior(train_set, config.seed), config.rebalance) if config.rebalance else None
    if world_size > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        # A frozen encoder gets no gradients for a while: DDP must not wait for them.
        G = DistributedDataParallel(G, device_ids=device_ids, find_unused_parameters=config.freeze_encoder_steps > 0)
        D = DistributedDataParallel(D, device_ids=device_ids)
    torch.manual_seed(config.seed + rank)  # dropout noise and hints differ between ranks
    random.seed(config.seed + rank)
    run = TrainingRun(
        config=config, rank=rank, world_size=world_size, device=device,
        run_dir=run_dir, train_set=train_set, test_paths=test_paths,
        sampler=sampler, loader=loader, steps_per_epoch=steps_per_epoch,
        max_steps=config.max_steps or config.n_epochs * steps_per_epoch,
        G=G, D=D, opt_G=opt_G, opt_D=opt_D, gan_loss=GANLoss(config.gan_mode), scaler=scaler,
        autocast_dtype=dtype, ema=ema, rebalance=rebalance, feature_loss=feature_loss,
    )
    if config.resume:
        resume_run(run)
    return run


def start_from(G: nn.Module, source: str) -> list[str]:
    """Copies the weights of checkpoint ``source`` into G where names and shapes match; returns the names of
    G's tensors that keep their initial values. A consensus (the built-in model) gives its first member's weights."""
    trained, _ = load_generator(source)
    if isinstance(trained, ConsensusGenerator):
        trained = trained.members[0]
    own = G.state_dict()
    taken = {k: v for k, v in trained.state_dict().items() if k in own and own[k].shape == v.shape}
    G.load_state_dict(taken, strict=False)
    return sorted(set(own) - set(taken))
