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


def plot_js_by_step(summary: dict, path: str | Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = {"js_soft_top1": "JS(soft, top-1)", "js_soft_top2": "JS(soft, top-2)", "js_top1_top2": "JS(top-1, top-2)"}
    for key, label in labels.items():
        ys = summary["by_step"][key]
        ax.plot(range(len(ys)), ys, marker=".", label=f"{label}, mean {summary['mean'][key]:.3g}")
    ax.axhline(math.log(2), color="gray", linestyle="--", linewidth=1, label="ln 2 (maximum)")
    ax.set_xlabel("thinking step")
    ax.set_ylabel("JS divergence (nats)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_logit_lens(lens: dict, weights: list[float], path: str | Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    layers = range(len(lens["share_top1"]))
    ax.plot(layers, lens["share_top1"], marker="o", label="share of top-1 path (all steps)")
    if lens.get("num_divergent_steps"):
        ax.plot(layers, lens["share_top1_divergent"], marker="s",
                label=f"share of top-1 path ({lens['num_divergent_steps']} steps where top-1/top-2 inputs disagree)")
    ax.plot(layers, lens["overlap_top1"], marker=".", linestyle=":", label="overlap with the top-1 input")
    ax.plot(layers, lens["overlap_top2"], marker=".", linestyle=":", label="overlap with the top-2 input")
    ax.axhline(weights[0], color="gray", linestyle="--", linewidth=1, label=f"input weight of top-1 ({weights[0]})")
    ax.set_xticks(list(layers))
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_bars(values: dict[str, float], ylabel: str, path: str | Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = list(values)
    ax.bar(names, [values[n] for n in names])
    for i, n in enumerate(names):
        ax.text(i, values[n], f"{values[n]:.3f}", ha="center", va="bottom")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_pass_at_k(curves: dict[str, list[float]], path: str | Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, ys in curves.items():
        ax.plot(range(1, len(ys) + 1), [100 * y for y in ys], marker=".", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
