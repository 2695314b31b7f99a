"""torchrun with 2 CPU processes (gloo): DistributedDataParallel, a distributed sampler, rank-0 writes."""

import json
import os
import subprocess
import sys

import torch

from colour_images import write_image_folder
from sacolor.checkpoint import load_generator, load_training_state


def test_torchrun_two_processes_gloo(tmp_path):
    write_image_folder(tmp_path / "photos", 18)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "sacolor.cli.train",
        "--data", str(tmp_path / "photos"), "--checkpoints-dir", str(tmp_path / "runs"), "--name", "ddp",
        "--netG", "unet_64", "--size", "64", "--ngf", "4", "--ndf", "4", "--sa-sizes", "16",
        "--batch-size", "2", "--max-steps", "4", "--eval-every", "2", "--save-every", "2",
        "--num-workers", "0", "--no-progress", "--device", "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    run = tmp_path / "runs" / "ddp"
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4]  # rank 0 alone evaluates and writes
    state = load_training_state(run)
    assert state["step"] == 4 and state["world_size"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # per-rank dropout streams
    generator, config = load_generator(run)
    assert config["train"]["batch_size"] == 2 and generator(torch.zeros(1, 1, 64, 64)).shape == (1, 2, 64, 64)
    assert not any(name.startswith("module.") for name in generator.state_dict())
