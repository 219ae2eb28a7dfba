"""The one way every training in the library starts, continues or finishes a run: `train_resuming`.

Three facts about transformers' `Trainer` shape it:
- `transformers.trainer_utils.get_last_checkpoint` returns the highest `checkpoint-N` directory even
  when the process was killed while writing it, and resuming from it then fails (no
  trainer_state.json) or loads a truncated file. Trainer writes `trainer_state.json` last in every
  checkpoint, so a checkpoint is complete when that file parses and names step N.
- Resumed from a checkpoint that already reached max_steps in the middle of an epoch, Trainer takes
  one more optimizer step (it checks max_steps only after a step). So a finished run is recognised
  by its marker, `train_done.json`, written last, and a run killed after its last checkpoint but
  before the final save is finished from that checkpoint without training.
- Trainer writes checkpoints from the main process only (`args.should_save`); so do we.

Terminal: Trainer's own printers (a dict per log on the terminal) are replaced by `QuietLogCallback`:
a progress bar that disappears when training ends (none when `disable_tqdm` or not a terminal) and
every log dict appended to output_dir/train_log.jsonl, printed as well when `console.verbose()`.
TrainingArguments sets `disable_tqdm` itself when transformers' logging is quieter than WARNING (the
CLI makes it so): pass disable_tqdm=false for the bar.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Callable

from transformers import PrinterCallback, ProgressCallback, TrainerCallback

from mentalese.atomic_files import append_line_durable, write_text_atomic
from mentalese.console import verbose
from mentalese.errors import MentaleseError

log = logging.getLogger(__name__)
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
DONE_MARKER = "train_done.json"
TRAIN_LOG = "train_log.jsonl"


class QuietLogCallback(TrainerCallback):
    """A transient progress bar, and the log dicts in output_dir/train_log.jsonl (on the terminal too
    with `-v`). Main process only."""

    def __init__(self, output_dir: str | os.PathLike):
        self.log_file = Path(output_dir) / TRAIN_LOG
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        from tqdm.auto import tqdm

        if state.is_world_process_zero:
            name = "/".join(Path(args.output_dir).parts[-3:])
            # disable=None: no bar when the output is not a terminal (logs, pipes, tests)
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=f"train {name}", unit="step",
                            leave=False, dynamic_ncols=True, disable=True if args.disable_tqdm else None)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, **{k: v for k, v in logs.items() if k != "total_flos"}}
        append_line_durable(self.log_file, json.dumps(record, default=str))
        if verbose():
            shown = str({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in record.items()})
            if self.bar is not None:
                self.bar.write(shown)
            else:
                print(shown, flush=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def quiet_trainer(trainer) -> None:
    """Swap Trainer's terminal printers (PrinterCallback / the progress callback) for `QuietLogCallback`."""
    from transformers.trainer import DEFAULT_PROGRESS_CALLBACK

    for printer in (PrinterCallback, ProgressCallback, DEFAULT_PROGRESS_CALLBACK):
        trainer.remove_callback(printer)
    trainer.add_callback(QuietLogCallback(trainer.args.output_dir))


def checkpoint_is_complete(path: str | os.PathLike) -> bool:
    path = Path(path)
    match = _CHECKPOINT.match(path.name)
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(match) and isinstance(state, dict) and state.get("global_step") == int(match.group(1))


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The highest complete `checkpoint-N` in `output_dir` (as a string, like transformers'), or None."""
    out = Path(output_dir)
    if not out.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in out.iterdir()
                   if p.is_dir() and (m := _CHECKPOINT.match(p.name)))
    for step, path in reversed(found):
        if checkpoint_is_complete(path):
            return str(path)
        log.warning("skipping incomplete checkpoint %s (interrupted while saving)", path)
    return None


def finished_run(out: str | os.PathLike) -> dict | None:
    """The completion marker of the run in `out` (global_step, max_steps, length), or None."""
    try:
        marker = json.loads((Path(out) / DONE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def training_length(args) -> dict:
    """The settings that fix how long a run trains: max_steps, or num_train_epochs when max_steps <= 0."""
    return {"max_steps": args.max_steps} if args.max_steps > 0 else {"num_train_epochs": args.num_train_epochs}


def planned_steps(trainer) -> int:
    """The optimizer steps `trainer.train()` would run to (Trainer's own count)."""
    args = trainer.args
    if args.max_steps > 0:
        return args.max_steps
    return trainer.set_initial_training_values(args, trainer.get_train_dataloader())[-1]


def _finish_from(trainer, checkpoint: str) -> None:
    """Load `checkpoint` (which reached the planned steps) into `trainer` instead of training further."""
    from transformers import TrainerState

    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
        raise MentaleseError(f"{checkpoint} already reached the last step but the final model was not saved; "
                             "finishing it under DeepSpeed/FSDP is not supported: rerun without them")
    trainer._load_from_checkpoint(checkpoint)  # Trainer's (or CODI's) loader, as train() would call it
    trainer.state = TrainerState.load_from_json(os.path.join(checkpoint, "trainer_state.json"))


def _refuse_past(checkpoint: str | None, reached: int, steps: int) -> None:
    if reached > steps:
        raise MentaleseError(f"{checkpoint} is past the {steps} steps this config trains for; use a new output_dir")


def train_resuming(args, build_trainer: Callable[[], tuple], save_final: Callable, *, resume: bool = True,
                   config=None) -> Path:
    """Start, continue or finish the training run in `args.output_dir`; returns output_dir/model.

    - A run finished with the same length (`training_length`) whose model/ is still there is left as it
      is: one log line, nothing built or written.
    - Otherwise config.yaml (when `config` is given), `build_trainer()` -> (trainer, extra metrics), and
      training from the last complete checkpoint when `resume`; a checkpoint that already reached the
      planned steps is finished from, not trained one step further; one past them is an error.
    - `save_final(trainer, model_dir)` runs on every rank (Trainer.save_model is a collective), then the
      main process writes trainer_state.json, train_metrics.json and, last, train_done.json. Every rank
      returns once those files exist.
    """
    from mentalese.config import save_config

    out = Path(args.output_dir)
    final = out / "model"
    done = finished_run(out) if resume else None
    if done is not None and done.get("length") == training_length(args) and final.is_dir():
        log.info("run in %s is complete (step %s of %s); nothing to do", out, done["global_step"], done["max_steps"])
        return final
    last = last_complete_checkpoint(out) if resume else None
    reached = int(_CHECKPOINT.match(Path(last).name).group(1)) if last else 0
    if args.max_steps > 0:
        _refuse_past(last, reached, args.max_steps)  # before anything is written
    out.mkdir(parents=True, exist_ok=True)
    if args.should_save:  # from here on the run is not finished until train_done.json is written again
        (out / DONE_MARKER).unlink(missing_ok=True)
        if config is not None:
            save_config(config, out / "config.yaml")
    trainer, extra_metrics = build_trainer()
    quiet_trainer(trainer)
    steps = planned_steps(trainer) if last else 0
    _refuse_past(last, reached, steps)  # an epoch-based run knows its steps only now
    if last and reached == steps:
        log.info("%s reached step %d of %d before the final save: finishing from it", last, reached, steps)
        _finish_from(trainer, last)
        metrics = {}
    else:
        if last:
            log.info("resuming from %s", last)
        metrics = trainer.train(resume_from_checkpoint=last).metrics
    save_final(trainer, final)
    if args.should_save:
        trainer.state.save_to_json(str(out / "trainer_state.json"))
        write_text_atomic(out / "train_metrics.json",
                          json.dumps({**metrics, **extra_metrics, "resumed_from": last}, indent=2))
        marker = {"global_step": trainer.state.global_step, "max_steps": trainer.state.max_steps,
                  "length": training_length(args)}
        write_text_atomic(out / DONE_MARKER, json.dumps(marker, indent=2))
    trainer.accelerator.wait_for_everyone()
    return final
