"""Plots for reports (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from mentalese.atomic_files import save_figure_atomic


def read_loss_curve(run_dir: str | Path) -> tuple[list[int], list[float]]:
    """(steps, losses) from the newest trainer_state.json under a Trainer output directory."""
    states = sorted(Path(run_dir).glob("**/trainer_state.json"), key=lambda p: p.stat().st_mtime)
    if not states:
        return [], []
    history = json.loads(states[-1].read_text()).get("log_history", [])
    pts = [(h["step"], h["loss"]) for h in history if "loss" in h]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_loss_curves(curves: dict[str, tuple[list[int], list[float]]], path: str | Path, title: str) -> Path:
    """One line per run; the legend sits right of the axes so it never hides a curve."""
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for name, (steps, losses) in curves.items():
        if steps:
            ax.plot(steps, losses, label=name, marker=".", markersize=4)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (log)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_accuracy_and_tokens(names: Sequence[str], accuracy: Sequence[float], tokens: Sequence[float],
                             path: str | Path, title: str, groups: Sequence[str] | None = None,
                             reference: float | None = None) -> Path:
    """Horizontal bars (long method names stay readable), first name on top, one colour per group;
    `reference` (an accuracy, e.g. the majority answer) is a dashed line on the accuracy panel."""
    groups = list(groups) if groups is not None else list(names)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color_of = {g: palette[i % len(palette)] for i, g in enumerate(dict.fromkeys(groups))}
    colors = [color_of[g] for g in groups]
    ys = list(range(len(names)))
    fig, (ax1, ax2) = plt.subplots(1, 2, sharey=True, figsize=(9, 1.5 + 0.38 * len(names)))
    ax1.barh(ys, [100 * a for a in accuracy], color=colors)
    for y, a in zip(ys, accuracy):
        ax1.text(100 * a + 1, y, f"{100 * a:.1f}%", va="center", fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, label=g) for g, c in color_of.items()] if len(color_of) > 1 else []
    if reference is not None:
        handles.append(ax1.axvline(100 * reference, color="gray", linestyle="--", linewidth=1,
                                   label=f"majority answer ({100 * reference:.1f}%)"))
    ax1.set_xlim(0, 115)
    ax1.set_xticks(range(0, 101, 20))
    ax1.set_xlabel("test accuracy (%)")
    ax2.barh(ys, tokens, color=colors)
    for y, t in zip(ys, tokens):
        ax2.text(t, y, f" {t:.1f}", va="center", fontsize=8)
    ax2.set_xlim(0, 1.18 * max(tokens, default=1) + 1e-9)
    ax2.set_xlabel("generated tokens / problem")
    ax1.set_yticks(ys, names, fontsize=9)
    ax1.invert_yaxis()
    for ax in (ax1, ax2):
        ax.grid(axis="x", alpha=0.3)
    legend_in = 0.35 if handles else 0  # inches kept free below the axes for the legend
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, legend_in / fig.get_figheight(), 1, 1))
    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
    return Path(path)
