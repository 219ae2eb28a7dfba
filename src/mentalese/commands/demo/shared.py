"""What every demo row uses: its result type, the test problems and the decoding settings.

A row module imports from here, never from `run.py` (which imports the rows' table), so the
arrows point one way: run -> rows -> shared.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mentalese.decoding.loop import DecodeConfig
from mentalese.tasks.registry import load_benchmark

if TYPE_CHECKING:
    from mentalese.commands.demo.run import DemoConfig


@dataclass
class RowResult:
    """One line of the table."""

    name: str
    metrics: dict[str, Any]
    eval_dir: Path  # holds predictions.jsonl
    train_seconds: float | None = None  # machine-dependent: only in the timings table
    loss_curve: tuple[list[int], list[float]] = ([], [])
    notes: str = ""  # reproducible text for the table's notes column (e.g. "pass@4 62%"); no timings
    timing_notes: str = ""  # machine-dependent text for the timings table (e.g. "speedup 2.1x at batch 1")
    report_section: str = ""  # extra markdown for the row's family section (plots saved under the run dir)
    family: str = ""  # a key of rows.FAMILIES; set by run_demo from the row's table entry


def test_examples(cfg: DemoConfig):
    return load_benchmark("chain", "test", **cfg.task_options("test"))


def eval_decode_config() -> DecodeConfig:
    return DecodeConfig(max_new_tokens=64, batch_size=128)


def majority_baseline(cfg: DemoConfig) -> float:
    """Accuracy of always answering the most common training answer: the floor any model must beat."""
    train = load_benchmark("chain", "train", **cfg.task_options("train"))
    top = Counter(ex.answer for ex in train).most_common(1)[0][0]
    test = test_examples(cfg)
    return sum(ex.answer == top for ex in test) / len(test)
