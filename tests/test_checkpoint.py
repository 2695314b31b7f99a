"""Checkpoint files: round trip, atomic writes, clear errors, generator rebuild."""

import json
import os
import stat
import sys
from pathlib import Path

import pytest
import torch
from namespaces import with_tmpfs

from sacolor.checkpoint import (
    CheckpointFiles,
    check_checkpoint_dir,
    load_checkpoint,
    load_generator,
    load_training_state,
    save_checkpoint,
)
from sacolor.models import build_generator

SPEC = {"name": "unet_64", "kwargs": {"ngf": 4, "sa_sizes": [16], "input_size": [64, 64], "dropout": True}}


def generator() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_generator("unet_64", ngf=4, sa_sizes=(16,), input_size=(64, 64), dropout=True)


def save(directory, g, with_ema=True, step=7):
    tensors = {f"generator.{k}": v for k, v in g.state_dict().items()}
    if with_ema:
        tensors.update({f"ema.{k}": v * 0.5 if v.is_floating_point() else v for k, v in g.state_dict().items()})
    state = {"step": step, "optimizer": {"state": {0: {"exp_avg": torch.ones(3)}}, "param_groups": [{"lr": 1e-3}]},
             "rng": [{"torch": torch.get_rng_state()}]}
    return save_checkpoint(directory, tensors, {"step": step, "generator": SPEC, "size": [64, 64]}, state)


def test_round_trip_prefers_ema_and_is_in_eval_mode(tmp_path):
    g = generator()
    weights = save(tmp_path, g)
    assert weights == tmp_path / "latest.safetensors"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "latest.pt", "latest.safetensors"]
    loaded, config = load_generator(tmp_path)
    assert not loaded.training and config["size"] == [64, 64] and config["step"] == 7
    for name, value in loaded.state_dict().items():
        expected = g.state_dict()[name]
        torch.testing.assert_close(value, expected * 0.5 if expected.is_floating_point() else expected)
    x = torch.randn(1, 1, 64, 64)
    torch.testing.assert_close(loaded(x), loaded(x))  # dropout is off


def test_without_ema_loads_the_generator_and_accepts_the_file_path(tmp_path):
    g = generator().eval()
    save(tmp_path, g, with_ema=False)
    loaded, _ = load_generator(tmp_path / "latest.safetensors")
    x = torch.randn(2, 1, 64, 64)
    torch.testing.assert_close(loaded(x), g(x))


def test_training_state_loads_with_weights_only(tmp_path):
    save(tmp_path, generator())
    state = load_training_state(tmp_path)
    assert state["step"] == 7 and torch.equal(state["optimizer"]["state"][0]["exp_avg"], torch.ones(3))
    torch.load(tmp_path / "latest.pt", weights_only=True)


def test_overwrite_leaves_no_temporary_files(tmp_path):
    g = generator()
    save(tmp_path, g, step=1)
    save(tmp_path, g, step=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "latest.pt", "latest.safetensors"]
    assert load_checkpoint(tmp_path)[1]["step"] == 2


def test_stale_files_of_a_killed_save_are_removed_and_modes_match(tmp_path):
    g = generator()
    save(tmp_path, g, step=1)
    files = CheckpointFiles.at(tmp_path)
    # What a save killed before its commit leaves.
    files.staged(files.weights).write_bytes(b"half a file")
    assert load_checkpoint(tmp_path)[1]["step"] == 1  # uncommitted staged files are ignored
    save(tmp_path, g, step=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "latest.pt", "latest.safetensors"]
    modes = {stat.S_IMODE(os.stat(p).st_mode) for p in files.members}
    umask = os.umask(0)
    os.umask(umask)
    assert modes == {0o666 & ~umask}  # safetensors alone would write 0600


def test_a_commit_in_progress_is_read_from_the_staged_files(tmp_path):
    g = generator()
    save(tmp_path, g, step=1)
    files = CheckpointFiles.at(tmp_path)
    old = {p: p.read_bytes() for p in files.members}
    save(tmp_path, g, step=2)
    # Roll back to "step 2 staged, committed, weights already renamed, the rest not yet".
    for member in (files.config, files.state):
        member.rename(files.staged(member))
        member.write_bytes(old[member])
    files.commit_marker.touch()
    assert load_checkpoint(tmp_path)[1]["step"] == 2 and load_training_state(tmp_path)["step"] == 2
    save(tmp_path, g, step=3)  # finishes the interrupted commit first, then saves
    assert load_checkpoint(tmp_path)[1]["step"] == 3 and not files.commit_marker.exists()


def test_nan_or_inf_weights_are_refused_by_name(tmp_path):
    g = generator()
    tensors = {f"generator.{k}": v.clone() for k, v in g.state_dict().items()}
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[name].view(-1)[0] = float("inf")
    save_checkpoint(tmp_path, tensors, {"step": 1, "generator": SPEC, "size": [64, 64]})
    with pytest.raises(ValueError, match=rf"NaN or Inf values \(in {name}\)"):
        load_generator(tmp_path)


def test_checkpoint_dir_is_checked_before_training(tmp_path, monkeypatch):
    check_checkpoint_dir(tmp_path / "new" / "run")
    assert (tmp_path / "new" / "run").is_dir() and not list((tmp_path / "new" / "run").iterdir())
    (tmp_path / "file").write_text("")
    for bad in (tmp_path / "file", tmp_path / "file" / "run"):
        with pytest.raises(ValueError, match="--checkpoints-dir"):
            check_checkpoint_dir(bad)

    def denied(self, *args, **kwargs):  # a read-only folder, also when the tests run as root
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "touch", denied)
    with pytest.raises(ValueError, match="--checkpoints-dir: cannot write checkpoints to .*locked.*Permission denied"):
        check_checkpoint_dir(tmp_path / "locked")


@pytest.mark.parametrize("change, message", [
    ({"size": [-64, 64]}, "size height must be between 1 and 8192; got -64"),
    ({"size": [0, 64]}, "size height must be between 1 and 8192; got 0"),
    ({"size": None}, "size must be \\[height, width\\]; got None"),
    ({"size": [96, 64]}, "size 96x64 must be a multiple of 64"),
    ({"size": ["64", 64]}, "size height must be an integer"),
    ({"generator": {**SPEC, "kwargs": {**SPEC["kwargs"], "ngf": 1e9}}}, "generator ngf must be an integer"),
    ({"generator": {**SPEC, "kwargs": {**SPEC["kwargs"], "ngf": 4096}}}, "generator ngf must be between 1 and 1024"),
    ({"generator": {**SPEC, "name": "unet_512"}}, "generator name must be one of"),
    ({"generator": {**SPEC, "kwargs": {"layers": 40}}}, "generator kwargs must be an object with keys from"),
    ({"generator": {**SPEC, "kwargs": {**SPEC["kwargs"], "norm": "group"}}}, "its generator entry cannot be built: norm must be one of"),
    # Issue 18, items 10 and 24: accepted as truthy, blamed on the weights, or a message without the file.
    ({"generator": {**SPEC, "kwargs": {**SPEC["kwargs"], "dropout": "no"}}}, "generator dropout must be true or false; got 'no'"),
    ({"generator": {**SPEC, "kwargs": {**SPEC["kwargs"], "spectral_norm": "false"}}}, "generator spectral_norm must be true or false"),
    ({"generator": {**SPEC, "kwargs": {**SPEC["kwargs"], "sa_sizes": {"a": 1}}}}, "generator sa_sizes must be a list of whole numbers"),
    ({"generator": {**SPEC, "kwargs": {**SPEC["kwargs"], "sa_sizes": [16.7]}}}, "generator sa_sizes: expected a list of whole numbers"),
    ({"generator": {**SPEC, "kwargs": {**SPEC["kwargs"], "ngf": 10**400}}}, "generator ngf must be between 1 and 1024; got 1000+\\.\\.\\.0+$"),
    ({"chroma_gain": "1.2"}, "chroma_gain must be a number above 0 and at most 2.0; got '1.2'"),
    ({"chroma_gain": 0}, "chroma_gain must be a number above 0 and at most 2.0; got 0"),
    ({"chroma_gain": 5.0}, "chroma_gain must be a number above 0 and at most 2.0; got 5.0"),
    ({"chroma_floor": -1}, "chroma_floor must be a number from 0 to 20.0; got -1"),
])
def test_config_values_are_checked_and_named(tmp_path, change, message):
    # Issue 12, item 13: each of these was a traceback deep in the model, or (size <= 0) at inference.
    save(tmp_path, generator())
    files = CheckpointFiles.at(tmp_path)
    config = {**json.loads(files.config.read_text()), **change}
    files.config.write_text(json.dumps({k: v for k, v in config.items() if v is not None}))
    with pytest.raises(ValueError, match=f"latest.json: {message}"):
        load_generator(tmp_path)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nothing" / "latest.safetensors")):
        load_generator(tmp_path / "nothing")
    save(tmp_path, generator())
    files = CheckpointFiles.at(tmp_path)

    state_bytes = files.state.read_bytes()
    files.state.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="latest.pt is corrupt"):
        load_training_state(tmp_path)
    files.state.write_bytes(state_bytes)

    weights = files.weights.read_bytes()
    files.weights.write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ValueError, match="latest.safetensors are corrupt"):
        load_generator(tmp_path)
    files.weights.write_bytes(weights)

    config = json.loads(files.config.read_text())
    files.config.write_text(json.dumps({**config, "step": 8}))
    with pytest.raises(ValueError, match="belong to different saves"):
        load_generator(tmp_path)
    files.config.write_text("{not json")
    with pytest.raises(ValueError, match="latest.json is not valid JSON"):
        load_generator(tmp_path)
    files.config.write_text(json.dumps({"step": 7}))
    with pytest.raises(ValueError, match="no 'generator' entry"):
        load_generator(tmp_path)


# Saves step 1, then tries step 2 on a file system with room for one save and a half.
SAVE_TWICE = """
import os, sys, torch
from sacolor.checkpoint import load_checkpoint, save_checkpoint

folder = sys.argv[1] + "/run"
state = {"step": 1, "moments": torch.zeros(100_000)}
save_checkpoint(folder, {"w": torch.zeros(100_000)}, {"step": 1}, state)
try:
    save_checkpoint(folder, {"w": torch.ones(100_000)}, {"step": 2}, {**state, "step": 2})
except OSError as error:
    print("error:", error)
tensors, config = load_checkpoint(folder)
print("kept:", config["step"], float(tensors["w"].sum()), sorted(os.listdir(folder)))
"""


def test_a_full_disk_during_a_save_says_so_and_keeps_the_previous_save(tmp_path):
    # Issue 18, item 13: torch.save's "RuntimeError: [enforce fail at inline_container.cc:672]".
    result = with_tmpfs(tmp_path / "small", "size=1200k", f'exec "{sys.executable}" -c "$2" "$1"', SAVE_TWICE)
    assert result.returncode == 0, result.stderr
    error, kept = result.stdout.splitlines()
    assert "error: cannot save the checkpoint in " in error and "/run: no space left on the device" in error
    assert "--checkpoints-dir" in error and "previous save" in error and "enforce fail" not in error
    assert kept == "kept: 1 0.0 ['latest.json', 'latest.pt', 'latest.safetensors']"


def test_sacolor_train_reports_a_full_disk_in_one_line(tmp_path):
    from colour_images import write_image_folder

    write_image_folder(tmp_path / "photos", 12)
    train = (f'exec "{sys.executable}" -m sacolor.cli.train --data "$2" --checkpoints-dir "$1" --name full --netG unet_64 '
             "--size 64 --ngf 4 --ndf 4 --batch-size 4 --max-steps 1 --eval-every 10 --n-samples 0 --num-workers 0 "
             "--no-progress")
    result = with_tmpfs(tmp_path / "small", "size=64k", train, tmp_path / "photos")
    assert result.returncode == 1, result.stderr
    assert "sacolor-train: error: cannot save the checkpoint in" in result.stderr and "no space left" in result.stderr
    assert "Traceback" not in result.stderr
