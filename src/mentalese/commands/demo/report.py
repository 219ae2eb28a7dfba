"""The demo's report: the reproducible table, the machine-dependent timings, a section per family.

`format_table` is what the README pastes: accuracy, generated tokens and notes only, so the same
seed gives the same text on any machine; latencies and train times go to `timings_table`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from mentalese.analysis.plots import plot_accuracy_and_tokens, plot_loss_curves
from mentalese.atomic_files import write_text_atomic
from mentalese.commands.demo.rows import FAMILIES
from mentalese.commands.demo.shared import RowResult, test_examples

if TYPE_CHECKING:
    from mentalese.commands.demo.run import DemoConfig

MAJORITY = "majority answer (reference)"


def by_family(results: list[RowResult]) -> list[RowResult]:
    """The lines in the order of FAMILIES (within a family: the order the rows ran)."""
    order = list(FAMILIES)
    return sorted(results, key=lambda r: order.index(r.family))


def format_table(results: list[RowResult], baseline: float) -> str:
    """Markdown, one line per result grouped by family (the majority answer ends the baselines);
    nothing in it depends on the machine."""
    lines = ["| family | method | test accuracy (strict) | flexible | generated tokens | notes |",
             "|---|---|---:|---:|---:|---|"]
    for family, info in FAMILIES.items():
        group = [r for r in results if r.family == family]
        cells = [(r.name, f"{100 * r.metrics['accuracy']:.1f}%", f"{100 * r.metrics['accuracy_flexible']:.1f}%",
                  f"{r.metrics['mean_generated_tokens']:.1f}", r.notes) for r in group]
        if family == "baselines":
            cells.append((MAJORITY, f"{100 * baseline:.1f}%", "-", "-", "always the most common training answer"))
        for i, cell in enumerate(cells):
            lines.append("| " + " | ".join((info.title if i == 0 else "",) + cell) + " |")
    return "\n".join(lines)


def timings_table(results: list[RowResult]) -> str:
    lines = ["| method | latency / problem (ms, batch 128) | train time (s) | notes |", "|---|---:|---:|---|"]
    for r in by_family(results):
        train = f"{r.train_seconds:.0f}" if r.train_seconds is not None else "-"
        lines.append(f"| {r.name} | {1000 * r.metrics['latency_per_example_s']:.2f} | {train} | {r.timing_notes} |")
    return "\n".join(lines)


def family_sections(results: list[RowResult]) -> str:
    """`## <family>`: its one-sentence summary, then the extra markdown of its rows (plots, analyses)."""
    parts = []
    for family, info in FAMILIES.items():
        group = [r for r in results if r.family == family]
        if not group:
            continue
        names = ", ".join(r.name for r in group)
        extra = "\n".join(r.report_section for r in group if r.report_section)
        parts.append(f"## {info.title}\n\n{info.summary}\n\nRows: {names}.\n\n{extra}".rstrip() + "\n")
    return "\n".join(parts)


def write_report(cfg: DemoConfig, out: Path, results: list[RowResult], baseline: float, wall: float) -> Path:
    ordered = by_family(results)
    table = format_table(results, baseline)
    write_text_atomic(out / "table.md", table + "\n")
    plot_accuracy_and_tokens([r.name for r in ordered], [r.metrics["accuracy"] for r in ordered],
                             [r.metrics["mean_generated_tokens"] for r in ordered], out / "accuracy_tokens.png",
                             "test accuracy and generated tokens (each family's section names its test set)",
                             groups=[FAMILIES[r.family].title for r in ordered], reference=baseline)
    curves = {r.name: r.loss_curve for r in ordered if r.loss_curve[0]}
    if curves:
        plot_loss_curves(curves, out / "loss_curves.png", "training loss of each trained model")
    example = test_examples(cfg)[0]
    samples = []
    for r in ordered:
        with (r.eval_dir / "predictions.jsonl").open() as f:
            pred = json.loads(f.readline())
        samples.append(f"**{r.name}**:\n```\n{pred['samples'][0]['text']}\n```")
    report = f"""# mentalese demo: reasoning on the chain task

Each problem is a chain of {cfg.num_steps} operations mod {cfg.modulus}, applied left to right.
Every model is a random tiny {cfg.arch} (character tokenizer) trained from scratch on
{cfg.train_examples} problems for {cfg.train_steps} steps, then decoded greedily on {cfg.test_examples}
held-out test problems (the splits are disjoint by construction), unless its section says otherwise.

## Results

{table}

Strict accuracy reads the number after "The answer is:"; flexible takes the last number in the
output. This table depends only on the seed ({cfg.seed}): a rerun gives the same text (also in `table.md`).

![accuracy and tokens](accuracy_tokens.png)
{"![training loss](loss_curves.png)" if curves else ""}

## Timings (machine-dependent)

Batched wall time per problem (batch 128) and training time on the machine that wrote this report;
they change with the machine and its load.

{timings_table(results)}

{family_sections(results)}
## One test problem

`{example.question}` (answer {example.answer}; steps: {' '.join(example.cot_steps)})

{chr(10).join(samples)}

## Reproduce

```
mentalese demo output_dir={cfg.output_dir}{' quick=true' if cfg.quick else ''}
```
Total wall time: {wall:.0f} s. Per-example outputs: `<row>/eval/predictions.jsonl`; metrics: `results.json`;
training logs: `<row>/**/train_log.jsonl`.
"""
    write_text_atomic(out / "report.md", report)
    write_text_atomic(out / "results.json", json.dumps({
        "rows": {r.name: {**r.metrics, "train_seconds": r.train_seconds} for r in results},
        "majority_baseline_accuracy": baseline, "wall_time_s": wall}, indent=2))
    return out / "report.md"
