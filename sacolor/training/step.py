"""One optimisation step: a discriminator update (once the GAN phase has
begun), then a generator update with D's parameters frozen."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..inference.hints import sample_hints
from ..models.colour_bins import bin_cross_entropy
from .losses import reconstruction_loss
from .run import TrainingRun, unwrap


def reconstruction_losses(run: TrainingRun, L: Tensor, fake: Tensor, ab: Tensor,
                          bin_logits: Tensor | None) -> dict[str, Tensor]:
    """lambda_L1 x the L1, L2 (on ab) or cross-entropy (on ``bin_logits``) loss, class-rebalanced with
    ``--rebalance``, plus lambda_feat x the feature loss."""
    config = run.config
    weights = run.rebalance(ab) if run.rebalance is not None else None
    recon = (bin_cross_entropy(bin_logits, ab, weights) if config.recon_loss == "ce"
             else reconstruction_loss(fake, ab, config.recon_loss, weights))
    losses = {"loss_G_L1": config.lambda_l1 * recon}
    if run.feature_loss is not None:
        losses["loss_G_feat"] = config.lambda_feat * run.feature_loss(L, fake, ab)
    return losses


def learning_rate_factor(schedule: str, step: int, max_steps: int) -> float:
    """The share of the base learning rates that step ``step`` (0-based) of ``max_steps`` uses."""
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / max_steps))
    return 1.0


def set_learning_rates(run: TrainingRun) -> None:
    """Puts this step's rates in both optimisers: a function of the step alone, so a resumed run needs no
    scheduler state to continue on the same curve. Each group's base rate is kept in its ``initial_lr``
    (as torch's schedulers keep it), which the optimiser's saved state carries."""
    factor = learning_rate_factor(run.config.lr_schedule, run.step, run.max_steps)
    for optimizer in (run.opt_G, run.opt_D):
        for group in optimizer.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor


def train_step(run: TrainingRun, batch: dict[str, Tensor]) -> dict[str, float]:
    """One step on ``batch`` (``{"L": (B, 1, H, W), "ab": (B, 2, H, W)}`` normalised).

    Before ``--gan-start-step`` the generator learns from the reconstruction
    losses alone and D is not trained (DeOldify's "NoGAN" pretraining);
    before ``--freeze-encoder-steps`` a pretrained encoder is frozen.

    Returns:
        The losses as floats: ``loss_G`` and its terms (``loss_G_L1``, and
        ``loss_G_feat``, ``loss_G_GAN`` and ``loss_D`` when they apply), each
        already times its lambda.
    """
    config = run.config
    L = batch["L"].to(run.device, non_blocking=True)
    ab = batch["ab"].to(run.device, non_blocking=True)
    G, D = unwrap(run.G), unwrap(run.D)
    if hasattr(G, "freeze_encoder"):
        G.freeze_encoder = run.step < config.freeze_encoder_steps
    adversarial = run.step >= config.gan_start_step
    set_learning_rates(run)
    run.G.train()
    run.D.train()
    extra = {"hints": sample_hints(ab, config.hint_share)} if config.hint_share else {}
    classify = config.recon_loss == "ce"  # the cross-entropy needs the classification head's logits
    with run.autocast():
        output = run.G(L, **extra, **({"with_logits": True} if classify else {}))
    fake, bin_logits = output if classify else (output, None)

    losses: dict[str, Tensor] = {}
    if adversarial:
        with run.autocast():
            # Real and fake pairs in one forward: DDP allows one forward per backward.
            logits = run.D(torch.cat((torch.cat((L, ab), 1), torch.cat((L, fake.detach()), 1)), 0))
        real_logits, fake_logits = logits.chunk(2)
        losses["loss_D"] = run.gan_loss.discriminator(real_logits, fake_logits)
        run.opt_D.zero_grad(set_to_none=True)
        run.scaler.scale(losses["loss_D"]).backward()
        run.scaler.step(run.opt_D)

    generator_terms = reconstruction_losses(run, L, fake, ab, bin_logits)
    if adversarial:
        # D judges the fake, but only G learns from it: the unwrapped D with
        # frozen parameters computes no weight gradients and no DDP all-reduce.
        D.requires_grad_(False)
        with run.autocast():
            generator_terms["loss_G_GAN"] = run.gan_loss.generator(D(torch.cat((L, fake), 1)))
        D.requires_grad_(True)
    loss_G = sum(generator_terms.values())
    run.opt_G.zero_grad(set_to_none=True)
    run.scaler.scale(loss_G).backward()
    run.scaler.step(run.opt_G)
    run.scaler.update()
    if run.ema is not None:
        run.ema.update(G)
    run.step += 1
    losses.update(generator_terms, loss_G=loss_G)
    return {name: float(value.detach()) for name, value in losses.items()}
