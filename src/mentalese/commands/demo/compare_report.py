"""The report of `mentalese demo compare`: one table per variant, mean and range over the seeds.

Accuracy, generated tokens and the thought drops are reproducible for a given seed, thread count and
library versions; latency at batch 1 and train time are timings of this machine (means over seeds).
"""

from __future__ import annotations

import json
import platform
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mentalese.atomic_files import write_text_atomic
from mentalese.commands.demo.compare_rows import ROWS

if TYPE_CHECKING:
    from mentalese.commands.demo.compare import CompareConfig

VARIANT_TITLES = {"chain": "Chain task (4 operations mod 10, in order)",
                  "shuffled": "Shuffled premises (the same chains, premises named and listed in random order)"}
DROPS = (("swap", "another problem's thoughts"), ("zero", "zeroed thoughts"))


def mean_range(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    if not values:
        return "-"
    vals = [scale * v for v in values]
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    # "lo to hi": a dash would make "-1.0-1.5" of a negative drop
    return f"{statistics.mean(vals):.{digits}f} ({min(vals):.{digits}f} to {max(vals):.{digits}f})"


def thought_drop(thoughts: dict[str, Any] | None, kind: str) -> float | None:
    """Accuracy with the thoughts kept minus with intervention `kind` (analysis/thought_interventions.py)."""
    if not thoughts:
        return None
    kept, other = thoughts.get("kept"), thoughts.get(kind)
    if kept is None or other is None:
        return None
    return kept["accuracy"] - other["accuracy"]


def variant_table(results: list[dict[str, Any]], rows: list[str]) -> str:
    seeds = sorted({r["seed"] for r in results})
    lines = [f"| method | accuracy % (mean, range over seeds {', '.join(map(str, seeds))}) | generated tokens | "
             "drop: swapped thoughts (pts) | drop: zeroed thoughts (pts) | attention on thoughts (%) | "
             "latency batch 1 (ms) | train time (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in rows:
        mine = [r for r in results if r["row"] == name]
        if not mine:
            continue
        drops = []
        for kind, _ in DROPS:
            values = [d for d in (thought_drop(r["thoughts"], kind) for r in mine) if d is not None]
            drops.append(mean_range(values) if values else "-")
        attention = [r["thoughts"]["kept"]["attention_on_thoughts"] for r in mine if r["thoughts"]]
        train = [r["train_seconds"] for r in mine]
        start = " (+ its start model)" if ROWS[name].start else ""
        lines.append(f"| {ROWS[name].label} | {mean_range([r['accuracy'] for r in mine])} | "
                     f"{statistics.mean(r['mean_generated_tokens'] for r in mine):.1f} | {drops[0]} | {drops[1]} | "
                     f"{mean_range(attention)} | "
                     f"{1000 * statistics.mean(r['latency_batch_1_s'] for r in mine):.1f} | "
                     f"{statistics.mean(train):.0f}{start} |")
    return "\n".join(lines)


def versions() -> str:
    import torch
    import transformers

    return f"torch {torch.__version__}, transformers {transformers.__version__}, Python {platform.python_version()}"


def write_compare_report(cfg: CompareConfig, out: Path, results: list[dict[str, Any]]) -> Path:
    tables = []
    for variant in cfg.variants:
        mine = [r for r in results if r["variant"] == variant]
        tables.append(f"### {VARIANT_TITLES[variant]}\n\n{variant_table(mine, cfg.rows_of(variant))}")
    table = "\n\n".join(tables)
    write_text_atomic(out / "table.md", table + "\n")
    write_text_atomic(out / "results.json", json.dumps(results, indent=2) + "\n")
    row_list = "\n".join(f"- **{ROWS[n].label}** (`{ROWS[n].recipe}`{', from ' + ROWS[n].start if ROWS[n].start else ''}"
                         f"{', ' + ' '.join(ROWS[n].overrides) if ROWS[n].overrides else ''}): {ROWS[n].note}"
                         for n in dict.fromkeys(cfg.rows + cfg.shuffled_rows))
    report = f"""# mentalese demo compare: the CODI paper's comparison on the chain task

Every row trains a random tiny GPT-2 (character tokenizer) on {cfg.train_examples} chain problems and is decoded
greedily on {cfg.test_examples} held-out problems, once per seed ({', '.join(map(str, cfg.seeds))}); cells give the
mean and, in brackets, the range over the seeds. Rows marked "+ its start model" fine-tune that seed's CoT-SFT
model (or, for the pretrained-like base, a CoT-SFT model of chains of 2-6 operations); their train time is their
own stage only. The thought drops are accuracy points lost when each problem's thoughts are replaced by another
problem's, or zeroed (`mentalese analyze thoughts`, on the first {cfg.thought_examples} test problems);
"attention on thoughts" is the attention mass that the positions predicting the answer put on all thought
positions together, averaged over heads, those positions, layers and problems, with the thoughts kept.
Latency and train time are this machine's ({cfg.threads} thread{'s' if cfg.threads != 1 else ''} per process);
everything else is reproducible for the seed and versions ({versions()}).

{table}

## Rows

{row_list}
"""
    write_text_atomic(out / "report.md", report)
    return out / "report.md"
