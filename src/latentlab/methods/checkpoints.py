"""Which Trainer checkpoint a resumed run may start from.

`transformers.trainer_utils.get_last_checkpoint` returns the highest `checkpoint-N` directory even
when the process was killed while writing it, and resuming from it then fails (no
trainer_state.json) or loads a truncated file. Trainer writes `trainer_state.json` last in every
checkpoint, so a checkpoint is complete when that file parses and names step N.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


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


def open_run_dir(cfg) -> Path:
    """Start (or continue) a training run in `cfg.output_dir`: check the task name first (so a typo writes
    nothing), create the directory, and write config.yaml from the main process. Returns the directory."""
    from latentlab.config import save_config
    from latentlab.tasks.registry import get_benchmark

    get_benchmark(cfg.task)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.should_save:
        save_config(cfg, out / "config.yaml")
    return out


def train_resuming(trainer, cfg, out: Path):
    """`trainer.train()`, from the last complete checkpoint in `out` when `cfg.resume`. Returns (result, that
    checkpoint or None)."""
    last = last_complete_checkpoint(out) if cfg.resume else None
    if last:
        log.info("resuming from %s", last)
    return trainer.train(resume_from_checkpoint=last), last
