"""The pieces of ``sacolor-train``: building a run (``run``), one optimisation
step (``step``), and saving and resuming it (``state``). The loop that ties
them together, with its evaluation and saving hooks, is ``sacolor.cli.train.fit``."""

from .build import EMA, TrainingRun, build_run, unwrap
from .state import resume_run, save_run
from .step import train_step

__all__ = ["EMA", "TrainingRun", "build_run", "resume_run", "save_run", "train_step", "unwrap"]
