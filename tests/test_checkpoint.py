"""Checkpoint files: round trip, atomic writes, clear errors, generator rebuild."""

import json

import pytest
import torch

from sacolor.checkpoint import (
    CheckpointFiles,
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
