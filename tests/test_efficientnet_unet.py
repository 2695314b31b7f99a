"""The pretrained-encoder generator: ImageNet weights load right, the U-Net and its
hint inputs, training it end to end, and inference without the weights package."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from colour_images import write_image_folder
from hint_spy import spy_on_hints
from sacolor import SelfAttention
from sacolor.checkpoint import load_generator
from sacolor.training.config import TrainConfig
from sacolor.cli.infer import main as infer
from sacolor.models import build_generator
from sacolor.models import efficientnet
from sacolor.models.efficientnet import VARIANTS, EfficientNetLite, pretrained_state_dict
from sacolor.models.efficientnet_unet import pool_hints, propagate_hints
from sacolor.training import build_run, fit

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = (967, 968)  # espresso, cup


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def classifier(request):
    model = EfficientNetLite(request.param)
    model.load_state_dict(pretrained_state_dict(request.param))  # strict: every key, every shape
    return model.eval(), VARIANTS[request.param].resolution


@pytest.mark.parametrize("photo, classes", [("chelsea", CAT_CLASSES), ("coffee", COFFEE_CLASSES)])
def test_imagenet_weights_load_right(classifier, photo, classes):
    model, resolution = classifier
    rgb = torch.from_numpy(getattr(data, photo)()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        logits = model(F.interpolate(rgb, size=(resolution, resolution), mode="bilinear", antialias=True))
    assert int(logits.argmax()) in classes


def test_lite2_is_lite0_compound_scaled():
    lite0, lite2 = EfficientNetLite("lite0"), EfficientNetLite("lite2")
    assert (len(lite0._blocks), len(lite2._blocks)) == (16, 21)  # stages 1,2,2,3,3,4,1 -> 1,3,3,4,4,5,1
    assert lite0.feature_channels == (16, 24, 40, 112, 1280) and lite2.feature_channels == (16, 24, 48, 120, 1280)
    features = lite2.eval().features(torch.rand(1, 3, 64, 96))
    assert [f.shape[-2:] for f in features] == [(64 // s, 96 // s) for s in (2, 4, 8, 16, 32)]
    g = build_generator("efficientnet_unet", input_size=64, encoder="lite2").eval()
    assert g(torch.zeros(1, 1, 64, 64)).shape == (1, 2, 64, 64)
    with pytest.raises(ValueError, match="encoder must be one of"):
        build_generator("efficientnet_unet", input_size=64, encoder="lite9")
    with pytest.raises(ValueError, match="--encoder lite2 needs --netG efficientnet_unet"):
        TrainConfig(netG="unet_128", encoder="lite2")


def test_same_padding_is_tensorflows():
    # TF "same" with stride 2 pads the bottom/right more: a 3x3 kernel on 8 pixels pads (0, 1).
    conv = efficientnet.SameConv2d(1, 1, 3, 2)
    torch.nn.init.ones_(conv.weight)
    out = conv(torch.ones(1, 1, 8, 8))
    assert out.shape == (1, 1, 4, 4)
    assert out[0, 0, 0, 0] == 9 and out[0, 0, -1, -1] == 4  # top-left fully inside, bottom-right padded


def test_generator_shapes_attention_and_hints():
    g = build_generator("efficientnet_unet", sa_sizes=(64,), input_size=256).eval()
    attention = [m for m in g.modules() if isinstance(m, SelfAttention)]
    assert len(attention) == 1
    seen = {}
    attention[0].register_forward_hook(lambda m, args, out: seen.update(shape=args[0].shape))
    out = g(torch.zeros(2, 1, 256, 320))
    assert out.shape == (2, 2, 256, 320) and seen["shape"][-2:] == (64, 80)  # N >= 4096 at a 256 render
    assert attention[0].explain(torch.zeros(seen["shape"])).startswith("auto -> cpu")  # the fused kernel, not reference
    with pytest.raises(ValueError, match="divisible by 32"):
        g(torch.zeros(1, 1, 100, 128))
    with pytest.raises(ValueError, match="hints must have shape"):
        g(torch.zeros(1, 1, 64, 64), torch.zeros(1, 2, 64, 64))


def test_pooled_hints_keep_a_single_point():
    hints = torch.zeros(1, 3, 32, 32)
    hints[0, :2, 5, 9] = torch.tensor([0.4, -0.2])
    hints[0, 2, 5, 9] = 1
    pooled = pool_hints(hints, 16)
    assert pooled.shape == (1, 3, 2, 2)
    torch.testing.assert_close(pooled[0, :, 0, 0], torch.tensor([0.4, -0.2, 1.0]))
    assert pooled[0, :, 1:, :].abs().sum() == 0 and pooled[0, :, :, 1:].abs().sum() == 0


def test_a_hint_spreads_over_similar_lightness_and_the_output_follows_it():
    l_norm = torch.full((1, 1, 64, 64), -0.5)
    l_norm[..., 32:] = 0.5  # right half much lighter: another region
    hints = torch.zeros(1, 3, 64, 64)
    hints[0, :2, 10:14, 10:14] = torch.tensor([0.3, -0.2]).view(2, 1, 1)
    hints[0, 2, 10:14, 10:14] = 1
    guide = propagate_hints(l_norm, hints)
    torch.testing.assert_close(guide[0, :2, 12, 12], torch.tensor([0.3, -0.2]))
    assert guide[0, 2, 12, 12] > 0.9 and guide[0, 2, 12, 20] > 0.5  # near, same lightness
    assert guide[0, 2, 12, 50] < 0.01  # as near, but across the lightness edge
    assert propagate_hints(l_norm, torch.zeros(1, 3, 64, 64)).abs().sum() == 0
    g = build_generator("efficientnet_unet", input_size=64).eval()
    with torch.no_grad():
        plain, hinted = g(l_norm), g(l_norm, hints)
    torch.testing.assert_close(hinted[0, :, 12, 12], torch.tensor([0.3, -0.2]), atol=0.05, rtol=0)
    torch.testing.assert_close(hinted[..., 40:], plain[..., 40:], atol=1e-3, rtol=0)


@pytest.mark.parametrize("global_context", [False, True])
def test_global_context_reaches_past_the_decoders_receptive_field(global_context):
    g = build_generator("efficientnet_unet", input_size=64, sa_sizes=(), global_context=global_context).eval()
    torch.nn.init.normal_(g.head.weight, std=0.1)
    l_norm = torch.zeros(1, 1, 64, 1024)
    features = [torch.rand(1, c, 64 // 2**i, 1024 // 2**i) for i, c in enumerate(g.encoder.feature_channels, 1)]
    changed = [f.clone() for f in features]
    changed[-1][..., 24:] += 10  # the deepest map's right quarter: 20 cells (640 px) from the left edge
    with torch.no_grad():
        left = (g(l_norm, features=features) - g(l_norm, features=changed))[..., :128].abs().max()
    assert (left > 1e-5) == global_context, float(left)  # without it, bit for bit the same


def test_global_context_is_saved_with_the_generator(tmp_path):
    config = TrainConfig(data=["unused"], netG="efficientnet_unet", size=64, global_context=True)
    assert config.generator_spec()["kwargs"]["global_context"] is True
    assert "global_context" not in TrainConfig(data=["unused"], netG="efficientnet_unet", size=64).generator_spec()["kwargs"]
    with pytest.raises(ValueError, match="--global-context needs --netG efficientnet_unet"):
        TrainConfig(data=["unused"], netG="unet_64", size=64, global_context=True)
    with pytest.raises(ValueError, match="global_context True are options of efficientnet_unet"):
        build_generator("unet_64", input_size=64, global_context=True)


def test_frozen_encoder_gets_no_gradient():
    g = build_generator("efficientnet_unet", input_size=64).train()
    g.freeze_encoder = True
    torch.nn.init.normal_(g.head.weight)
    g(torch.rand(2, 1, 64, 64)).sum().backward()
    assert all(p.grad is None for p in g.encoder.parameters())
    assert g.head.weight.grad is not None and g.decoder[0][0].weight.grad is not None


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("effnet")
    write_image_folder(root / "photos", 12, height=72, width=96)
    config = TrainConfig(
        data=[str(root / "photos")], checkpoints_dir=str(root), name="tiny", netG="efficientnet_unet", size=64,
        sa_sizes=(16,), resize="random", batch_size=4, max_steps=6, eval_every=3, save_every=3, num_workers=0,
        progress=False, ndf=8, ema=True, freeze_encoder_steps=2, gan_start_step=4, hint_share=0.5, rebalance=0.5,
        lambda_feat=1.0, val_fraction=0.2,
    )
    run = build_run(config)
    history = fit(run)
    return root / "tiny", history


def test_tiny_efficientnet_run_has_every_phase(trained):
    run_dir, history = trained
    assert len(history) == 6
    assert all(np.isfinite(v) for step in history for v in step.values())
    assert "loss_D" not in history[3] and "loss_D" in history[4]  # NoGAN until --gan-start-step
    assert {"loss_G_L1", "loss_G_feat"} <= history[0].keys()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3, 6]


def test_inference_does_not_need_the_weights_package(trained, monkeypatch, tmp_path):
    def missing(variant="lite0"):
        raise ImportError(f"the {variant} weights package is not installed")

    monkeypatch.setattr(efficientnet, "pretrained_state_dict", missing)
    generator, config = load_generator(trained[0])
    assert config["generator"]["name"] == "efficientnet_unet"
    assert generator(torch.zeros(1, 1, 64, 64)).shape == (1, 2, 64, 64)


def test_cli_hints_reach_the_model(trained, monkeypatch, tmp_path):
    from PIL import Image

    Image.fromarray(np.full((40, 80, 3), 128, np.uint8)).save(tmp_path / "gray.png")
    seen = spy_on_hints(monkeypatch)
    (tmp_path / "hints.json").write_text(json.dumps([{"x": 79, "y": 0, "color": "#00ff00"}]))
    status = infer([str(tmp_path / "gray.png"), "-o", str(tmp_path / "out.png"), "--checkpoint", str(trained[0]),
                    "--hint", "0,39,#ff0000", "--hints", str(tmp_path / "hints.json"), "--quiet"])
    assert status == 0 and (tmp_path / "out.png").is_file()
    mask = seen[-1][0, 2]
    assert mask.shape == (32, 96) and mask[-1, 0] == 1 and mask[0, -1] == 1 and mask.sum() == 2 * 4  # 3x3 patches at corners; 40x80 runs at 32x96 (aspect kept)
    assert seen[-1][0, 0, -1, 0] > 0 and seen[-1][0, 0, 0, -1] < 0  # red: a > 0; green: a < 0


@pytest.mark.parametrize("args, message", [
    (["--hint", "10,10"], "expected X,Y,#RRGGBB"),
    (["--hint", "10,10,#12345"], "is not a colour"),
    (["--hint", "500,10,#ff0000"], "outside the 80x40 image"),
    (["--hints", "missing.json"], "does not exist"),
])
def test_cli_bad_hints_are_clear(trained, tmp_path, capsys, monkeypatch, args, message):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.full((40, 80, 3), 128, np.uint8)).save(tmp_path / "gray.png")
    status = infer([str(tmp_path / "gray.png"), "-o", str(tmp_path / "out.png"), "--checkpoint", str(trained[0]),
                    "--quiet", *args])
    assert status in (1, 2) and message in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()
