"""Image quality metrics for colourisation: PSNR, SSIM, CIEDE2000 (scikit-image)
and colourfulness (Hasler and Suesstrunk, 2003).

Layout convention: every function takes RGB in [0, 1] either as a numpy
array (H, W, 3) or as a torch tensor (3, H, W) or (B, 3, H, W). A batch gives
the mean over its images. Values are returned as Python floats.
"""

from __future__ import annotations

import numpy as np
import torch

Image = np.ndarray | torch.Tensor


def as_hwc_batch(rgb: Image, name: str = "rgb") -> np.ndarray:
    """RGB in the module's convention -> float64 numpy (B, H, W, 3).

    Raises:
        TypeError: neither a numpy array nor a tensor.
        ValueError: a layout other than (H, W, 3) numpy or (3, H, W) / (B, 3, H, W) tensor.
    """
    if isinstance(rgb, torch.Tensor):
        if rgb.dim() == 3:
            rgb = rgb[None]
        if rgb.dim() != 4 or rgb.shape[1] != 3:
            raise ValueError(f"{name}: a tensor must be (3, H, W) or (B, 3, H, W); got {tuple(rgb.shape)}")
        return rgb.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy()
    if isinstance(rgb, np.ndarray):
        if rgb.ndim != 3 or rgb.shape[-1] != 3:
            raise ValueError(f"{name}: a numpy array must be (H, W, 3); got {rgb.shape}")
        return rgb.astype(np.float64)[None]
    raise TypeError(f"{name} must be a numpy array or a torch tensor; got {type(rgb).__name__}")


def _pairs(pred_rgb: Image, true_rgb: Image) -> tuple[np.ndarray, np.ndarray]:
    pred, true = as_hwc_batch(pred_rgb, "pred_rgb"), as_hwc_batch(true_rgb, "true_rgb")
    if pred.shape != true.shape:
        raise ValueError(f"pred_rgb {pred.shape} and true_rgb {true.shape} must have the same layout (B, H, W, 3)")
    return pred, true


def psnr(pred_rgb: Image, true_rgb: Image) -> float:
    """Peak signal-to-noise ratio in dB (data_range 1), averaged over a batch.

    Args:
        pred_rgb, true_rgb: RGB in [0, 1]; numpy (H, W, 3) or tensors (3, H, W) / (B, 3, H, W).

    Returns:
        The mean PSNR; inf where the images are equal.
    """
    from skimage.metrics import peak_signal_noise_ratio  # the package imports scipy.stats: seconds

    pred, true = _pairs(pred_rgb, true_rgb)
    with np.errstate(divide="ignore"):  # an exact match (a gray truth against gray) is inf dB, not a warning
        return float(np.mean([peak_signal_noise_ratio(t, p, data_range=1.0) for p, t in zip(pred, true)]))


def ssim(pred_rgb: Image, true_rgb: Image) -> float:
    """Structural similarity on RGB (data_range 1, channel_axis -1), averaged over a batch.

    Uses scikit-image's default 7x7 window, so H and W must be at least 7.

    Args:
        pred_rgb, true_rgb: RGB in [0, 1]; numpy (H, W, 3) or tensors (3, H, W) / (B, 3, H, W).
    """
    from skimage.metrics import structural_similarity

    pred, true = _pairs(pred_rgb, true_rgb)
    return float(np.mean([
        structural_similarity(t, p, data_range=1.0, channel_axis=-1) for p, t in zip(pred, true)
    ]))


def colorfulness(rgb: Image) -> float:
    """Hasler and Suesstrunk's colourfulness M = sigma_rgyb + 0.3 * mu_rgyb, on a 0..255 scale.

    0 for a gray image; about 15 "slightly", 33 "moderately", 59 "quite", 82+ "highly" colourful.

    Args:
        rgb: RGB in [0, 1]; numpy (H, W, 3) or tensors (3, H, W) / (B, 3, H, W).
    """
    values = []
    for image in as_hwc_batch(rgb) * 255.0:
        r, g, b = image[..., 0], image[..., 1], image[..., 2]
        rg = r - g
        yb = 0.5 * (r + g) - b
        sigma = np.hypot(rg.std(), yb.std())
        mu = np.hypot(rg.mean(), yb.mean())
        values.append(sigma + 0.3 * mu)
    return float(np.mean(values))


def ciede2000(pred_rgb: Image, true_rgb: Image) -> float:
    """Mean CIEDE2000 colour difference (scikit-image's ``deltaE_ciede2000``), averaged over a batch.

    About 1 is a just-noticeable difference; lower is better.

    Args:
        pred_rgb, true_rgb: RGB in [0, 1]; numpy (H, W, 3) or tensors (3, H, W) / (B, 3, H, W).
    """
    from skimage.color import deltaE_ciede2000, rgb2lab

    pred, true = _pairs(pred_rgb, true_rgb)
    return float(np.mean([deltaE_ciede2000(rgb2lab(t), rgb2lab(p)).mean() for p, t in zip(pred, true)]))
