"""The README's Quick start and first training example, run as a new user would (issue 12 items 18, 21)."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

from colour_images import write_image_folder
from PIL import Image

from sacolor.cli import infer, train

README = (Path(__file__).parent.parent / "README.md").read_text()


def bash_block(section: str) -> list[str]:
    """The lines of the first ```bash block under the heading ``section``."""
    body = README.split(f"## {section}\n", 1)[1]
    return re.search(r"```bash\n(.*?)```", body, re.S)[1].strip().splitlines()


def test_quick_start_is_install_colourise_test_and_the_sample_colourises(tmp_path, monkeypatch):
    install, colourise, test = bash_block("Quick start")
    assert install.startswith("pip install torch") and "--no-build-isolation" in install and ".[test]" in install
    assert test == "python -m pytest -q"
    command, *args = shlex.split(colourise)
    assert command == "sacolor-infer"
    monkeypatch.chdir(Path(__file__).parent.parent)
    output = tmp_path / args[args.index("-o") + 1]
    args[args.index("-o") + 1] = str(output)
    assert infer.main([*args, "--quiet", "--device", "cpu"]) == 0
    assert Image.open(output).size == Image.open(args[0]).size


def test_first_training_example_runs_on_ten_photos(tmp_path):
    # One step of the report's full-size expt5 model (about 15 s on one core).
    line = next(line for line in bash_block("Training (`sacolor-train`)") if line.startswith("sacolor-train"))
    args = shlex.split(line)[1:]
    write_image_folder(tmp_path / "photos", 10)
    args[args.index("--data") + 1] = str(tmp_path / "photos")
    quick = ["--max-steps", "1", "--eval-every", "1", "--num-workers", "0", "--checkpoints-dir", str(tmp_path / "runs")]
    assert train.main([*args, *quick]) == 0
    assert (tmp_path / "runs" / "expt5" / "latest.safetensors").is_file()
    shutil.rmtree(tmp_path / "runs")  # its checkpoint is 0.7 GB
