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
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, (steps, losses) in curves.items():
        if steps:
            ax.plot(steps, losses, label=name, marker=".")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (log)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_accuracy_and_tokens(names: Sequence[str], accuracy: Sequence[float], tokens: Sequence[float],
                             path: str | Path, title: str) -> Path:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ax1.bar(names, [100 * a for a in accuracy], color=colors[: len(names)])
    ax1.set_ylabel("test accuracy (%)")
    ax1.set_ylim(0, 100)
    for i, a in enumerate(accuracy):
        ax1.text(i, 100 * a + 2, f"{100 * a:.1f}", ha="center")
    ax2.bar(names, tokens, color=colors[: len(names)])
    ax2.set_ylabel("generated tokens / problem")
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", rotation=20)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
    return Path(path)
