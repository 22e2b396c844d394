"""What makes a Trainer run resumable midway (kill -9, a machine taken back, a session's end): a
checkpoint every few minutes of training, the training seconds summed over every resumed part, and
the data order of the epoch that was cut, so that a resumed run trains on what the uninterrupted
run would have. The Trainer restores these callbacks from its checkpoint's state
(`restore_callback_states_from_checkpoint`, set in runtime.training_arguments)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from .checkpoints import latest_complete_checkpoint, set_aside_incomplete

logger = logging.getLogger(__name__)


class WallClockCallback(TrainerCallback, ExportableState):
    """Training seconds summed over every run of one output folder: the total is stored in each
    checkpoint (the Trainer's stateful callbacks), so a resumed run adds to what the interrupted
    runs spent, and the run's record reports the whole cost."""

    def __init__(self, seconds: float = 0.0):
        self.seconds, self._start = seconds, None

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.time()

    def total(self) -> float:
        return self.seconds + (time.time() - self._start if self._start is not None else 0.0)

    def state(self) -> dict:
        return {"args": {"seconds": round(self.total(), 1)}, "attributes": {}}


class SaveEveryCallback(TrainerCallback):
    """A checkpoint about every `minutes` of training (0: never): the interval is counted in steps,
    from the speed of the first CALIBRATION_STEPS steps, and is the same on every process (the
    smallest of theirs), since the processes of a distributed run must save at the same steps. Why
    not `save_steps`: a step count would mean seconds on a GPU and an hour on a small CPU.
    `save_last_step`: also one at the end, for a stage whose result a later stage builds on."""

    CALIBRATION_STEPS = 5

    def __init__(self, minutes: float, save_last_step: bool = False):
        self.seconds, self.save_last_step = 60 * minutes, save_last_step
        self.every = self._first = self._start = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.seconds <= 0:
            return control
        if self._first is None:  # the first step of this process (a resumed run starts midway)
            self._first, self._start = state.global_step - 1, time.time()
        done = state.global_step - self._first
        if self.every is None and done > self.CALIBRATION_STEPS:
            per_step = (time.time() - self._start) / (done - 1)
            self.every = _smallest_on_every_process(max(1, round(self.seconds / per_step)), args.device)
            logger.info("A checkpoint every %d steps (about %g minutes).", self.every, self.seconds / 60)
        if (self.every and done % self.every == 0) or (self.save_last_step and state.global_step >= state.max_steps):
            control.should_save = True
        return control


def _smallest_on_every_process(value: int, device) -> int:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    tensor = torch.tensor([value], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


class EpochOrderCallback(TrainerCallback, ExportableState):
    """The torch RNG state at the start of the current epoch, stored in each checkpoint and put back
    when a resumed run begins that epoch again. Why by hand: the length-grouped sampler draws each
    epoch's order from the global RNG when the epoch starts, and the Trainer restores only the RNG
    state of the checkpoint (mid-epoch), so without this a resumed epoch would skip the first
    batches of another order (some examples seen twice, some never)."""

    def __init__(self, epoch: int = -1, rng: list[int] | None = None):
        self.epoch, self.rng = epoch, rng

    def on_epoch_begin(self, args, state, control, **kwargs):
        epoch = int(state.epoch or 0)
        if self.rng is not None and epoch == self.epoch:  # resumed inside this epoch: its order again
            torch.set_rng_state(torch.tensor(self.rng, dtype=torch.uint8))
        else:
            self.epoch, self.rng = epoch, torch.get_rng_state().tolist()

    def state(self) -> dict:
        return {"args": {"epoch": self.epoch, "rng": self.rng}, "attributes": {}}


def resumable_callbacks(minutes: float, save_last_step: bool = False, seconds: float = 0.0) -> list[TrainerCallback]:
    """The clock (starting from `seconds` already spent), the timed checkpoints and the epoch's
    order, for one Trainer."""
    return [WallClockCallback(seconds), SaveEveryCallback(minutes, save_last_step), EpochOrderCallback()]


def training_seconds(trainer) -> float:
    """The WallClockCallback's total (a resume replaces the callback object with the restored one)."""
    return next(c for c in trainer.callback_handler.callbacks if isinstance(c, WallClockCallback)).total()


def resume_point(folder: Path) -> str | None:
    """The newest whole checkpoint in `folder` to resume from, or None; newer damaged ones are set aside."""
    last = latest_complete_checkpoint(folder)
    if folder.is_dir():
        set_aside_incomplete(folder, last)
    if last is not None:
        logger.info("Resuming from %s", last)
    return str(last) if last else None
