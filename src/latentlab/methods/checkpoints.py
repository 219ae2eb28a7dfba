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
