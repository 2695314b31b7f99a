"""The trainer end to end on tiny synthetic photos: losses, checkpoints, metrics, exact resume, CLI."""

import dataclasses
import itertools
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from colour_images import write_drifting_video, write_image_folder
from PIL import Image

from sacolor.checkpoint import load_checkpoint, load_generator, load_training_state
from sacolor.cli import infer
from sacolor.cli import train as train_module
from sacolor.cli.train import main
from sacolor.evaluation.scoring import evaluate_images
from sacolor.inference.colorizer import Colorizer
from sacolor.training import build_run, fit
from sacolor.training.config import PRESETS, TrainConfig, flag, merge_config
from sacolor.training.state import save_run
from sacolor.training.step import learning_rate_factor, train_step


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    write_image_folder(root, 22)
    return root


def tiny(photos, out, **overrides) -> TrainConfig:
    options = dict(
        data=[str(photos)], checkpoints_dir=str(out), name="tiny", netG="unet_64", size=64, ngf=8, ndf=8,
        sa_sizes=(16,), sa_sizes_D=(16,), batch_size=4, max_steps=8, eval_every=4, save_every=4,
        num_workers=0, progress=False, lr_g=1e-3, lr_d=1e-3, attention_backend="auto",
    )
    return TrainConfig(**{**options, **overrides})


def test_tiny_run_learns_saves_and_reloads(photos, tmp_path):
    run_state = build_run(tiny(photos, tmp_path, max_steps=12, eval_every=6, save_every=6, ema=True))
    history = fit(run_state)
    assert len(history) == 12
    assert all(math.isfinite(v) for step in history for v in step.values())
    l1 = [step["loss_G_L1"] for step in history]
    assert sum(l1[-3:]) < 0.8 * sum(l1[:3]), l1

    run = tmp_path / "tiny"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [6, 12]
    assert all({"psnr", "ssim", "ciede2000", "colorfulness", "psnr_gray", "ciede2000_gray"} <= r.keys() for r in records)
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_0000006.png", "step_0000012.png"]

    generator, config = load_generator(run)
    assert config["step"] == 12 and config["size"] == [64, 64] and not generator.training
    torch.testing.assert_close(generator.state_dict(), run_state.ema.model.state_dict())
    out = generator(torch.zeros(1, 1, 64, 128))  # any size divisible by 2**6
    assert out.shape == (1, 2, 64, 128)

    # One evaluation path: sacolor-eval's code on the checkpoint gives the trainer's numbers.
    summary = evaluate_images(Colorizer(generator, (64, 64), torch.device("cpu")), run_state.test_paths)
    assert summary["model"] == pytest.approx({k: records[-1][k] for k in summary["model"]}, rel=1e-6)
    assert len(summary["images"]) == records[-1]["images"] == 2


def test_resume_continues_exactly(photos, tmp_path):
    # 22 images, 2 held out, batch 4: 5 steps per epoch, so the resume at step 3 is mid-epoch
    # and the continuation crosses an epoch boundary. Dropout and EMA are on.
    common = dict(max_steps=6, eval_every=3, save_every=3, ema=True, dropout=True)
    fit(build_run(tiny(photos, tmp_path / "straight", **common)))
    fit(build_run(tiny(photos, tmp_path / "resumed", **{**common, "max_steps": 3})))
    fit(build_run(tiny(photos, tmp_path / "resumed", **common, resume=True)))

    straight = load_file(tmp_path / "straight" / "tiny" / "latest.safetensors")
    resumed = load_file(tmp_path / "resumed" / "tiny" / "latest.safetensors")
    assert straight.keys() == resumed.keys() and any(k.startswith("ema.") for k in straight)
    # Bitwise equal on this machine; float32 tolerance leaves room for kernels whose
    # parallel reductions are not order-stable elsewhere.
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], msg=name)
    records = [
        [json.loads(line) for line in (tmp_path / d / "tiny" / "metrics.jsonl").read_text().splitlines()]
        for d in ("straight", "resumed")
    ]
    assert [r["step"] for r in records[0]] == [r["step"] for r in records[1]] == [3, 6]
    for a, b in zip(*records):
        assert a == pytest.approx(b, rel=1e-4)


def test_learning_rate_factor():
    assert [learning_rate_factor("constant", s, 4) for s in range(4)] == [1.0] * 4
    assert [learning_rate_factor("cosine", s, 4) for s in range(5)] == pytest.approx([1.0, 0.8536, 0.5, 0.1464, 0.0], abs=1e-4)


def test_cosine_schedule_decays_and_resumes_on_the_same_curve(photos, tmp_path):
    common = dict(max_steps=6, eval_every=6, save_every=3, lr_schedule="cosine")
    straight = build_run(tiny(photos, tmp_path / "straight", **common))
    fit(straight)
    # The last step (index 5 of 6) ran at 0.5 (1 + cos(5 pi / 6)) = 6.7 % of the base rates.
    for optimizer in (straight.opt_G, straight.opt_D):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * learning_rate_factor("cosine", 5, 6))

    # Stopped after 3 of its 6 steps (as a killed run is), then resumed: the same curve, the same weights.
    interrupted = build_run(tiny(photos, tmp_path / "resumed", **common))
    interrupted.sampler.set_position(0, 0)
    for batch in itertools.islice(interrupted.loader, 3):
        train_step(interrupted, batch)
    save_run(interrupted)
    fit(build_run(tiny(photos, tmp_path / "resumed", **common, resume=True)))
    expected = load_file(tmp_path / "straight" / "tiny" / "latest.safetensors")
    resumed = load_file(tmp_path / "resumed" / "tiny" / "latest.safetensors")
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], msg=name)


# Resumes a run to step 4 and dies (os._exit, no clean-up) right after the Nth
# write (fsync), rename or removal of the save at step 4; exits 0 if it had fewer.
KILLED_SAVE = """
import os, sys
sys.path.insert(0, sys.argv[1])
from test_train import tiny
from pathlib import Path
from sacolor.training import build_run, fit

limit, done = int(sys.argv[4]), 0

def counted(operation):
    def run(*args, **kwargs):
        global done
        result = operation(*args, **kwargs)
        done += 1
        if done == limit:
            os._exit(KILLED)
        return result
    return run

KILLED = 17
run = build_run(tiny(Path(sys.argv[2]), Path(sys.argv[3]), max_steps=4, save_every=2, eval_every=100, resume=True))
os.fsync, os.replace, os.unlink = counted(os.fsync), counted(os.replace), counted(os.unlink)
fit(run)
"""


def test_a_save_killed_at_any_point_leaves_a_whole_checkpoint(photos, tmp_path):
    # Issue 12, item 1: after a kill at each step of a save, --resume and sacolor-infer
    # --checkpoint both work, with the weights, config and training state of one save.
    fit(build_run(tiny(photos, tmp_path / "at2", max_steps=2, save_every=2, eval_every=100)))
    shutil.copytree(tmp_path / "at2", tmp_path / "at4")
    fit(build_run(tiny(photos, tmp_path / "at4", max_steps=4, save_every=2, eval_every=100, resume=True)))
    expected = {step: load_checkpoint(tmp_path / f"at{step}" / "tiny")[0] for step in (2, 4)}
    Image.fromarray(np.full((40, 56), 128, np.uint8)).save(tmp_path / "gray.png")

    kills = 0
    while True:
        run = tmp_path / f"kill{kills + 1}"
        shutil.copytree(tmp_path / "at2", run)
        status = subprocess.run(
            [sys.executable, "-c", KILLED_SAVE, str(Path(__file__).parent), str(photos), str(run), str(kills + 1)],
            capture_output=True, text=True,
        )
        if status.returncode == 0:
            break
        assert status.returncode == 17, status.stderr
        kills += 1
        tensors, config = load_checkpoint(run / "tiny")
        step = config["step"]
        assert step in (2, 4) and tensors.keys() == expected[step].keys(), (kills, step)
        for name, value in tensors.items():
            torch.testing.assert_close(value, expected[step][name], msg=f"kill {kills}: {name}")
        assert load_training_state(run / "tiny")["step"] == step
        assert build_run(tiny(photos, run, max_steps=4, save_every=2, eval_every=100, resume=True)).step == step
        assert infer.main([str(tmp_path / "gray.png"), "-o", str(run / "out.png"), "--checkpoint", str(run / "tiny"),
                           "--quiet"]) == 0
    assert kills >= 8  # 3 staged files, the marker, a directory sync, 3 renames, a sync, the marker's removal


def test_cli_runs_on_photos_and_a_video(photos, tmp_path):
    video = write_drifting_video(tmp_path / "film.mp4", seconds=2.0, rate=10, height=64, width=96)
    status = main([
        "--data", str(photos), str(video), "--frame-cache", str(tmp_path / "frames"),
        "--checkpoints-dir", str(tmp_path), "--name", "cli", "--netG", "unet_64",
        "--size", "64", "--ngf", "4", "--ndf", "4", "--sa-sizes", "32", "--batch-size", "2", "--max-steps", "2",
        "--eval-every", "2", "--num-workers", "0", "--no-progress", "--gan-mode", "hinge", "--spectral-norm",
    ])
    assert status == 0
    assert (tmp_path / "cli" / "latest.safetensors").is_file()
    config = json.loads((tmp_path / "cli" / "latest.json").read_text())
    assert config["train"]["gan_mode"] == "hinge" and config["generator"]["kwargs"]["sa_sizes"] == [32]
    assert len(list((tmp_path / "frames").rglob("*.png"))) == 4  # 2 s at 2 frames/s, cached once


@pytest.mark.parametrize("args, message", [
    (["--size", "96"], "not divisible by 64"),
    (["--hint-share", "0.5"], "needs --netG efficientnet_unet"),
    (["--preset", "expt9"], "invalid choice"),
    (["--sa-sizes", "48"], "no feature map of size 48"),
    (["--batch-size", "64"], "larger than the 20 training images"),
    (["--resume"], "no checkpoint at"),
])
def test_cli_errors_are_clear(photos, tmp_path, capsys, args, message):
    base = ["--data", str(photos), "--checkpoints-dir", str(tmp_path), "--netG", "unet_64", "--size", "64",
            "--ngf", "4", "--ndf", "4", "--num-workers", "0", "--max-steps", "1"]
    try:
        status = main(base + args)
    except SystemExit as exit:  # argparse's own errors (choices)
        status = exit.code
    assert status == 2
    assert __import__("re").search(message, capsys.readouterr().err)


@pytest.mark.parametrize("values, message", [
    ({"ngf": 1e9}, "--ngf must be an integer; got 1000000000.0"),
    ({"ngf": "8"}, "--ngf must be an integer; got '8' \\(str\\)"),
    ({"ngf": -8}, "--ngf must be between 1 and 1024; got -8"),
    ({"ngf": 100000}, "--ngf must be between 1 and 1024"),
    ({"n_layers_D": 40}, "--n-layers-D \\(for --size 64x64\\) must be between 1 and 4; got 40"),
    ({"size": 65536}, "--size height must be between 1 and 8192; got 65536"),
    ({"size": -64}, "size sides must be positive"),
    ({"lr_g": ".0002"}, "--lr-g must be a number"),
    ({"ema": "yes"}, "--ema must be true or false"),
    # Issue 18, items 10 and 24: truncated to 64 and 16, or errors that named neither file nor option.
    ({"size": [64.5, 64]}, "config.json: --size: size must be one whole number of pixels or \\[height, width\\]; got \\[64.5, 64\\]"),
    ({"sa_sizes": [16.7]}, "config.json: --sa-sizes: expected a list of whole numbers such as \\[32, 64\\]; got \\[16.7\\]"),
    ({"sa_sizes": {"a": 1}}, "config.json: --sa-sizes: expected a list of whole numbers"),
    ({"lr_g": 10**401}, "config.json: --lr-g must be a finite number; got a 402-digit integer"),
])
def test_config_file_values_are_checked_with_exit_2(photos, tmp_path, capsys, values, message):
    # Issue 12, item 13: these were tracebacks (exit 1) from deep inside the model.
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data": [str(photos)], "netG": "unet_64", "size": 64, **values}))
    assert main(["--config", str(config), "--checkpoints-dir", str(tmp_path), "--num-workers", "0"]) == 2
    assert __import__("re").search(message, capsys.readouterr().err)


def test_a_yaml_alias_bomb_is_refused_before_it_is_expanded(tmp_path, capsys):
    # Issue 18, item 15: nested aliases in `data` (9**9 entries) ran out of memory. Seven levels here,
    # 9**7 entries: harmless if expanded, and refused by type either way.
    levels = ["&a0 [x, x, x, x, x, x, x, x, x]"] + [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 7)]
    config = tmp_path / "bomb.yaml"
    config.write_text(f"data: [{', '.join(levels)}]\n")
    assert main(["--config", str(config), "--checkpoints-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bomb.yaml: --data must be a folder or file path, or a list of them" in err and len(err) < 1000


@pytest.mark.parametrize("content, message", [
    (b"size: 64\nname: \xff\xfe\n", "is not valid YAML"),
    (None, "is a folder; pass a YAML or JSON file of options"),
])
def test_a_config_that_is_no_text_file_is_named(tmp_path, capsys, content, message):
    # Issue 18, item 24: a non-UTF-8 config gave an error without the file; a folder "does not exist".
    config = tmp_path / "run.yaml"
    config.mkdir() if content is None else config.write_bytes(content)
    assert main(["--config", str(config), "--checkpoints-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--config {config}" in err and message in err


@pytest.fixture(scope="module")
def two_step_run(photos, tmp_path_factory):
    """A finished 2-step run (ndf 8) to resume."""
    out = tmp_path_factory.mktemp("two_steps")
    fit(build_run(tiny(photos, out, max_steps=2, eval_every=100, save_every=2, n_samples=0)))
    return out


def resume_args(photos, out) -> list[str]:
    return ["--data", str(photos), "--checkpoints-dir", str(out), "--name", "tiny", "--netG", "unet_64", "--size", "64",
            "--ngf", "8", "--sa-sizes", "16", "--sa-sizes-D", "16", "--batch-size", "4", "--max-steps", "3",
            "--num-workers", "0", "--no-progress", "--resume"]


@pytest.mark.parametrize("change, damage, message", [
    (["--ndf", "16"], None, "tiny/latest.json was trained with --ndf 8, but the options give --ndf 16"),
    (["--n-layers-D", "2"], None, "was trained with --n-layers-D 3, but the options give --n-layers-D 2"),
    (["--sa-sizes-D"], None, "was trained with --sa-sizes-D 16, but the options give --sa-sizes-D \\(none\\)"),
    ([], lambda state: state.pop("optimizer_D"), "tiny/latest.pt lacks optimizer_D: it is damaged"),
    ([], lambda state: state.update(rng=[{"torch": "garbage"}]), "tiny/latest.pt is damaged \\(TypeError"),
])
def test_a_resume_that_cannot_fit_the_run_names_the_option_or_file(photos, two_step_run, tmp_path, capsys, change, damage, message):
    # Issue 18, item 12: RuntimeError, KeyError or TypeError tracebacks; only the generator's options were compared.
    shutil.copytree(two_step_run, tmp_path, dirs_exist_ok=True)
    if damage is not None:
        state_file = tmp_path / "tiny" / "latest.pt"
        state = torch.load(state_file, weights_only=True)
        damage(state)
        torch.save(state, state_file)
    assert main(resume_args(photos, tmp_path) + ["--ndf", "8"] + change) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err, err


def test_init_from_starts_g_from_a_checkpoint_and_names_what_it_could_not_take(photos, two_step_run, tmp_path, capsys):
    trained, _ = load_generator(two_step_run / "tiny")
    run = build_run(tiny(photos, tmp_path, init_from=str(two_step_run / "tiny")))
    for name, value in trained.state_dict().items():
        torch.testing.assert_close(run.G.state_dict()[name], value, rtol=0, atol=0, msg=name)
    # Attention at another size: those weights stay as built, and the log names them.
    other = build_run(tiny(photos, tmp_path, name="other", sa_sizes=(32,), init_from=str(two_step_run / "tiny")))
    fresh = capsys.readouterr().err.split("except", 1)[1]
    missing = sorted(set(other.G.state_dict()) - set(trained.state_dict()))
    assert missing and all(name in fresh for name in missing)


def test_empty_data_folder_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["--data", str(tmp_path / "empty"), "--checkpoints-dir", str(tmp_path)]) == 2
    assert "has no images" in capsys.readouterr().err


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert exit.value.code == 0
    text = capsys.readouterr().out
    for action in train_module.build_parser()._actions:
        assert action.help, action.option_strings
    for option in ("--preset", "--sa-sizes", "--lr-d", "--ema", "--resume", "--eval-every", "--amp", "--config"):
        assert option in text


def test_config_precedence_and_presets(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("gan-mode: hinge\nlr_g: 0.0001\nsize: 256x512\nnetG: unet_256\n")
    config = merge_config({"lr_g": 0.0003}, str(config_file), preset="expt6")
    assert config.gan_mode == "hinge" and config.lr_g == 0.0003 and config.size == (256, 512)
    assert config.sa_sizes == (64,) and config.lr_d == 2e-4  # from the preset
    json_file = tmp_path / "run.json"
    json_file.write_text(json.dumps({"ngf": 32, "bogus": 1}))
    with pytest.raises(ValueError, match="unknown option\\(s\\) \\['bogus'\\]"):
        merge_config({}, str(json_file))
    assert len(PRESETS) == 8 and PRESETS["expt5"]["sa_sizes"] == (64,) and PRESETS["expt5"]["gan_mode"] == "vanilla"
    assert {p["gan_mode"] for p in PRESETS.values()} == {"vanilla", "lsgan"}
    assert {p["sa_sizes"] for p in PRESETS.values()} == {(), (32,), (64,), (128,)}


def test_every_config_field_is_one_flag_with_its_rules():
    # The parser and the validation are generated from TrainConfig's field metadata (issue 17).
    actions = {action.dest: action for action in train_module.build_parser()._actions}
    for f in dataclasses.fields(TrainConfig):
        rules = f.metadata["option"]
        action = actions.pop(f.name)
        assert action.option_strings[0] == flag(f.name)
        assert action.help.startswith(rules.help)
        assert tuple(action.choices or ()) == tuple(rules.choices or ())
        if rules.choices:
            with pytest.raises(ValueError, match=f"{flag(f.name)} must be one of"):
                rules.check(flag(f.name), "no such choice")
    assert set(actions) == {"help", "config", "preset"}


def test_close_ups_must_be_smaller_than_the_other_crops():
    assert TrainConfig(resize="random", min_crop_area=0.6, close_up_share=0.3).close_up_area == 0.1
    with pytest.raises(ValueError, match="--close-up-area 0.1 must be below --min-crop-area 0.1"):
        TrainConfig(resize="random", close_up_share=0.3)


@pytest.mark.parametrize("amp_dtype", ["bf16", "fp16"])
def test_amp_on_cpu_is_bf16_autocast_with_float32_master_weights(tmp_path, amp_dtype):
    from sacolor.training.build import training_precision
    from sacolor.training.config import TrainConfig

    config = dataclasses.replace(TrainConfig(), amp=True, amp_dtype=amp_dtype)
    assert training_precision(config, torch.device("cpu"), rank=0) == torch.bfloat16
    assert training_precision(dataclasses.replace(config, amp=False), torch.device("cpu"), rank=0) is None
    write_image_folder(tmp_path / "photos", 4)
    run = build_run(train_module.parse_config([
        "--data", str(tmp_path / "photos"), "--checkpoints-dir", str(tmp_path / "ck"), "--netG", "unet_64",
        "--size", "64x64", "--sa-sizes", "8", "--batch-size", "2", "--num-workers", "0", "--amp"]))
    with run.autocast():
        fake = run.G(torch.zeros(2, 1, 64, 64))
    assert fake.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in run.G.parameters())  # the master copy
