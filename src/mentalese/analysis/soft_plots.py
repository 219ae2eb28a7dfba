"""Plots for the soft-thinking analyses (matplotlib, Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from mentalese.atomic_files import save_figure_atomic


def _save(fig, path: str | Path) -> Path:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
    return Path(path)


def _legend_right(ax) -> None:
    """The legend beside the axes, never over a line."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def plot_js_by_step(summary: dict, path: str | Path, title: str) -> Path:
    """Log scale (zeros on the 0 line): JS(soft, top-1) is orders of magnitude below the others, and that
    is the finding."""
    fig, ax = plt.subplots(figsize=(8.5, 3.6))
    labels = {"js_soft_top1": "JS(soft, top-1)", "js_soft_top2": "JS(soft, top-2)", "js_top1_top2": "JS(top-1, top-2)"}
    values = [y for key in labels for y in summary["by_step"][key]]
    smallest = min([y for y in values if y > 0], default=1e-6)
    for key, label in labels.items():
        ys = summary["by_step"][key]
        ax.plot(range(len(ys)), ys, marker=".", label=f"{label}, mean {summary['mean'][key]:.3g}")
    ax.axhline(math.log(2), color="gray", linestyle="--", linewidth=1, label="ln 2 (maximum)")
    # log above the smallest non-zero value, linear below it: exact zeros sit on the 0 line
    linthresh = 10 ** math.floor(math.log10(smallest))
    ax.set_yscale("symlog", linthresh=linthresh, linscale=1.0)
    ax.set_ylim(0, 1.5)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("thinking step")
    ax.set_ylabel("JS divergence (nats, log; 0 at the bottom)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend_right(ax)
    return _save(fig, path)


def plot_logit_lens(lens: dict, weights: list[float], path: str | Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(9, 3.6))
    layers = range(len(lens["share_top1"]))
    ax.plot(layers, lens["share_top1"], marker="o", label="share of top-1 path (all steps)")
    if lens.get("num_divergent_steps"):
        ax.plot(layers, lens["share_top1_divergent"], marker="s",
                label=f"share of top-1 path\n({lens['num_divergent_steps']} steps where the inputs disagree)")
    ax.plot(layers, lens["overlap_top1"], marker=".", linestyle=":", label="overlap with the top-1 input")
    ax.plot(layers, lens["overlap_top2"], marker=".", linestyle=":", label="overlap with the top-2 input")
    ax.axhline(weights[0], color="gray", linestyle="--", linewidth=1, label=f"input weight of top-1 ({weights[0]})")
    ax.set_xticks(list(layers))
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("share / overlap")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend_right(ax)
    return _save(fig, path)


def plot_bars(values: dict[str, float], xlabel: str, path: str | Path, title: str) -> Path:
    """Horizontal bars, first name on top: long names stay readable."""
    names = list(values)
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.35 * len(names)))
    ax.barh(range(len(names)), [values[n] for n in names])
    for i, n in enumerate(names):
        ax.text(values[n], i, f" {values[n]:.3f}", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.15 * max(values.values(), default=1) + 1e-9)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_pass_at_k(curves: dict[str, list[float]], path: str | Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    longest = max((len(ys) for ys in curves.values()), default=1)
    for name, ys in curves.items():
        ax.plot(range(1, len(ys) + 1), [100 * y for y in ys], marker=".", label=name)
    ax.set_xscale("log", base=2)
    ticks = [k for k in (1, 2, 4, 8, 16, 32, 64, 128) if k <= longest] or [1]
    ax.set_xticks(ticks, [str(k) for k in ticks])
    ax.minorticks_off()
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel("pass@k (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend_right(ax)
    return _save(fig, path)
