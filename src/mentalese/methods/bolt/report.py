"""Markdown report and plots of the BoLT toy experiment (results.json -> report.md + PNGs)."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

from mentalese.analysis.plots import plt
from mentalese.atomic_files import write_text_atomic
from mentalese.atomic_files import save_figure_atomic


def _pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _num(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def results_table(rows: list[dict]) -> str:
    lines = ["| run | iteration | accuracy | eval thoughts exact | proposer ELBO k=1 / 2 / 4 (nats/chunk) | "
             "proposals exact | selected exact | selected: right result | steps |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        elbo = " / ".join(_num(r.get(f"proposer_elbo_k{k}")) for k in (1, 2, 4))
        lines.append(f"| {r['label']} | {r['iteration']} | {_pct(r['accuracy'])} | {_pct(r.get('eval_thoughts_correct'))} "
                     f"| {elbo} | {_pct(r.get('proposals_correct'))} | {_pct(r.get('selected_correct'))} "
                     f"| {_pct(r.get('selected_result_correct'))} | {r['max_steps']} |")
    return "\n".join(lines)


def plot_curves(rows: list[dict], path: Path) -> None:
    """Three panels (accuracy, proposer ELBO, thought quality) and one legend under them."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    xs: tuple[list, list, list] = ([], [], [])  # the iterations drawn on each panel
    teacher = next((r for r in rows if r["variant"] == "teacher"), None)
    for variant in dict.fromkeys(r["variant"] for r in rows):
        its = [r for r in rows if r["variant"] == variant]
        if variant.startswith(("em", "uniform")):
            its = ([teacher] if teacher else []) + its
            em = [r for r in its if "proposer_elbo_k1" in r]  # k = 1: the one bound every K has
            panel_xs = ([r["iteration"] for r in its], [r["iteration"] - 1 for r in em], [r["iteration"] for r in em])
            for x, new in zip(xs, panel_xs):
                x.extend(new)
            axes[0].plot(panel_xs[0], [100 * r["accuracy"] for r in its], marker="o", label=its[-1]["label"])
            axes[1].plot(panel_xs[1], [r["proposer_elbo_k1"] for r in em], marker="o", label=its[-1]["label"])
            line, = axes[2].plot(panel_xs[2], [100 * r.get("selected_correct", math.nan) for r in em],
                                 marker="o", label=its[-1]["label"])
            axes[2].plot(panel_xs[2], [100 * r.get("selected_result_correct", math.nan) for r in em],
                         marker="x", linestyle=":", color=line.get_color())
        elif variant.startswith("raw"):
            axes[0].axhline(100 * its[0]["accuracy"], linestyle="--", color="gray" if "compute" in variant else "k",
                            label=its[0]["label"])
    axes[0].set(xlabel="EM iteration (0 = warm start)", ylabel="test accuracy (%)", title="test accuracy")
    axes[1].set(xlabel="model (0 = warm start)", ylabel="ELBO k=1 (nats / chunk)", title="E-step ELBO of the proposer")
    axes[2].set(xlabel="EM iteration", ylabel="selected thoughts (%)", title="selected thoughts: exact (o), right result (x)")
    for ax, x in zip(axes, xs):
        _integer_ticks(ax, x)
        ax.grid(alpha=0.3)
    for ax in (axes[0], axes[2]):  # percentages: from 0, with room above the highest point
        top = max([y for line in ax.get_lines() for y in line.get_ydata() if math.isfinite(y)], default=0)
        upper = max(10, 1.15 * top)
        ax.set_ylim(-0.04 * upper, upper)  # a point at 0 stays whole
    if not any(math.isfinite(y) for line in axes[1].get_lines() for y in line.get_ydata()):
        axes[1].text(0.5, 0.5, "undefined: no chunk with\nall its proposals closed", ha="center", va="center",
                     transform=axes[1].transAxes, color="gray")
        axes[1].set_yticks([])
    handles, labels = axes[0].get_legend_handles_labels()  # every variant is on the accuracy panel
    if handles:  # one legend under the panels, never over a line
        fig.legend(handles, labels, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1 if handles else 0, 1, 1))
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)


def _integer_ticks(ax, xs) -> None:
    """Ticks at the iterations drawn (whole numbers), also when a panel has a single point."""
    xs = sorted(set(xs))
    if xs:
        ax.set_xticks(xs)
        ax.set_xlim(min(xs) - 0.3, max(xs) + 0.3)


def reproduce_command(cfg) -> str:
    """The `mentalese demo bolt-toy` command line of `cfg` (a ToyExperimentConfig): recipe, variants and
    overrides are written whenever they differ from the defaults, as JSON lists (valid YAML flow, so
    items like `tiny_model_options={}` survive), each argument shell-quoted."""
    from mentalese.methods.bolt.experiment import ToyExperimentConfig

    default = ToyExperimentConfig()
    args = [f"output_dir={cfg.output_dir}"]
    if cfg.recipe != default.recipe:
        args.append(f"recipe={cfg.recipe}")
    if list(cfg.variants) != default.variants:
        args.append(f"variants={json.dumps(list(cfg.variants))}")
    args.append(f"iterations={cfg.iterations}")
    if cfg.overrides:
        args.append(f"overrides={json.dumps(list(cfg.overrides))}")
    if list(cfg.seeds) != default.seeds:
        args.append(f"seeds={json.dumps(list(cfg.seeds))}")
    if cfg.quick:
        args.append("quick=true")
    return " ".join(["mentalese", "demo", "bolt-toy"] + [shlex.quote(a) for a in args])


def write_toy_report(cfg, out: Path, rows: list[dict]) -> Path:
    plot_curves(rows, out / "bolt_toy.png")
    text = f"""# BoLT toy experiment

Documents state chain-arithmetic questions and their results only ("Q: 7+5*3. The answer is: 2.");
the latent thought of an answer sentence is the question restated, then its derivation
("7+5*3: 7+5=2 2*3=6"). The first `teacher_docs` documents get exact thoughts from the stand-in teacher; EM infers the thoughts of the rest. Every model is a
random tiny char-level model (the recipe's `model_name_or_path`) trained from scratch with the same
number of optimizer steps per M-step (except "raw only (same tokens)"). Accuracy: held-out test
problems; latent models are prompted with the question chunk in its training layout,
`SOL <|prior|> EOL Q: ... . SOL <|prior|>`, and write a thought, EOL, then the answer; raw-only models
get `Q: ... . `. E-step: K proposals per chunk from `estep.proposal` (the toy recipe: the prior, so the
importance weight is the likelihood of the chunk given the thought), one kept by `estep.selection`.
ELBO: the E-step's k-sample bound under the model that proposed (iteration i's row: the model of
iteration i-1). "exact": thoughts equal to the true thought; "right result": the thought's last
result is the document's answer (answer chunks only).

{results_table(rows)}

![curves](bolt_toy.png)

## Reproduce

```
OMP_NUM_THREADS=1 {reproduce_command(cfg)}
```
Per-run details: `<variant>/summary.json`, `<variant>/iter_*/estep/manifest.json`, `<variant>/iter_*/eval/`.
"""
    write_text_atomic(out / "report.md", text)
    return out / "report.md"


# ---------------------------------------------------------------- several seeds

def _mean(values: list) -> float:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else math.nan


def seeds_table(rows: list[dict], seeds: list[int]) -> str:
    """One line per (variant, iteration): the mean over seeds and each seed's accuracy."""
    per_seed = " / ".join(f"seed {s}" for s in seeds)
    lines = [f"| run | iteration | accuracy: mean | {per_seed} | eval thoughts exact (mean) | proposals exact (mean) | "
             "selected exact (mean) | selected: right result (mean) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key in dict.fromkeys((r["variant"], r["iteration"]) for r in rows):
        group = {r["seed"]: r for r in rows if (r["variant"], r["iteration"]) == key}
        first = next(iter(group.values()))
        accs = " / ".join(_pct(group[s]["accuracy"]) if s in group else "-" for s in seeds)
        mean = {k: _mean([r.get(k) for r in group.values()])
                for k in ("accuracy", "eval_thoughts_correct", "proposals_correct", "selected_correct",
                          "selected_result_correct")}
        lines.append(f"| {first['label']} | {key[1]} | {_pct(mean['accuracy'])} | {accs} | "
                     f"{_pct(mean['eval_thoughts_correct'])} | {_pct(mean['proposals_correct'])} | "
                     f"{_pct(mean['selected_correct'])} | "
                     f"{_pct(mean['selected_result_correct'])} |")
    return "\n".join(lines)


def plot_seeds(rows: list[dict], path: Path) -> None:
    """Accuracy by EM iteration: the mean over seeds (line) and every seed (dots); raw-only means dashed."""
    fig, ax = plt.subplots(figsize=(8.5, 3.6))
    teacher = [r for r in rows if r["variant"] == "teacher"]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        its = [r for r in rows if r["variant"] == variant]
        if variant.startswith(("em", "uniform")):
            its = teacher + its
            xs = sorted({r["iteration"] for r in its})
            means = [100 * _mean([r["accuracy"] for r in its if r["iteration"] == x]) for x in xs]
            line, = ax.plot(xs, means, marker="o", label=its[-1]["label"])
            ax.scatter([r["iteration"] for r in its], [100 * r["accuracy"] for r in its], s=12, alpha=0.5,
                       color=line.get_color())
        elif variant.startswith("raw"):
            ax.axhline(100 * _mean([r["accuracy"] for r in its]), linestyle="--",
                       color="gray" if "compute" in variant else "k", label=its[0]["label"])
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(xlabel="EM iteration (0 = warm start)", ylabel="test accuracy (%)",
           title="BoLT toy: mean over seeds (line), each seed (dots)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)


def write_seeds_report(cfg, out: Path, rows: list[dict]) -> Path:
    plot_seeds(rows, out / "bolt_toy_seeds.png")
    seeds = list(cfg.seeds)
    links = " · ".join(f"[seed {s}](seed_{s}/report.md)" for s in seeds)
    text = f"""# BoLT toy experiment, {len(seeds)} seeds

Each seed is a whole experiment (warm start, E-steps and M-steps seeded by it; the setting and the
columns are explained in each seed's report: {links}). Mean over seeds, and every seed's accuracy.

{seeds_table(rows, seeds)}

![accuracy by iteration](bolt_toy_seeds.png)

## Reproduce

```
OMP_NUM_THREADS=1 {reproduce_command(cfg)}
```
"""
    write_text_atomic(out / "report.md", text)
    return out / "report.md"
