"""Training the colouriser: its options (``config``), losses (``losses``), data
(``data``), the state one process holds (``run``), building it from a config
(``build``), one optimisation step (``step``), saving and resuming (``state``)
and the loop that ties them together with its evaluation and saving hooks
(``loop.fit``)."""

from .build import build_run
from .loop import evaluate_run, fit
from .run import EMA, TrainingRun, unwrap
from .state import resume_run, save_run
from .step import train_step

__all__ = ["EMA", "TrainingRun", "build_run", "evaluate_run", "fit", "resume_run", "save_run", "train_step", "unwrap"]
