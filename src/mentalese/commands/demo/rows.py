"""The demo's rows, in one table. Adding a method to the demo = one entry here (and its family).

Each row trains (or reuses) its model(s) in `<output_dir>/<row>/` and returns one or more table
lines (`RowResult`). The report groups the lines by family, in the order of `FAMILIES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mentalese.commands.demo.bolt_rows import bolt_rows
from mentalese.commands.demo.codi_rows import codi_rows
from mentalese.commands.demo.latent_baseline_rows import coconut_rows, icot_rows
from mentalese.commands.demo.sft_rows import cot_sft_rows, nocot_sft_rows
from mentalese.commands.demo.shared import RowResult
from mentalese.commands.demo.soft_thinking_rows import soft_thinking_rows


@dataclass(frozen=True)
class Family:
    title: str  # the report's section heading
    summary: str  # one sentence: what the family's rows show, and what they do not


@dataclass(frozen=True)
class Row:
    family: str  # a key of FAMILIES
    description: str
    run: Callable[..., list[RowResult]]  # (DemoConfig, run_dir: Path) -> table lines


FAMILIES: dict[str, Family] = {
    "baselines": Family("Baselines", (
        "CoT-SFT and No-CoT-SFT show how much writing the intermediate steps helps a tiny model trained from "
        "scratch on this task, against the majority-answer floor; they say nothing about pretrained models or "
        "natural-language problems.")),
    "codi": Family("CODI", (
        "The CODI row shows whether the cot-sft model, distilled into a few continuous thoughts (with the "
        "per-thought result loss this library adds to CODI), still answers while generating far fewer tokens; it "
        "does not reproduce the paper's GSM8k numbers, it is not robust to the seed at demo size (docs/LOG.md), "
        "and the quick setting's 150 steps are too few for it to learn the task.")),
    "latent": Family("iCoT-SI and Coconut", (
        "The iCoT-SI and Coconut rows train the CODI paper's other latent baselines from the same cot-sft model, "
        "through the same decode loop and harness; at demo size both stay near the No-CoT floor, over 3 seeds too "
        "(docs/comparison.md), so they show that the methods run, not that they learn this task.")),
    "soft": Family("Soft thinking", (
        "The soft-thinking rows decode one half-trained toy thinking model five ways and show how pass@1 and "
        "pass@k differ between token sampling and the soft-thinking variants, and that a concept token acts "
        "almost like its top-1 token alone; they do not measure soft thinking on a pretrained reasoning model, "
        "where the papers report their gains.")),
    "bolt": Family("BoLT", (
        "The BoLT rows check that the pipeline runs end to end (a raw-only model, a warm start on teacher "
        "thoughts, one EM iteration) on the toy's own 2-step problems; at demo size no BoLT model learns the "
        "task, so they do not show the method's effect.")),
}

ROWS: dict[str, Row] = {
    "cot-sft": Row("baselines", "fine-tuned to write the steps, then the answer", cot_sft_rows),
    "nocot-sft": Row("baselines", "fine-tuned to write the answer directly", nocot_sft_rows),
    "bolt": Row("bolt", "BoLT toy: raw vs teacher latent thoughts vs one EM iteration", bolt_rows),
    "soft-thinking": Row("soft", "a toy model that thinks in <think>; greedy, sampling, soft, Dirichlet, Gumbel "
                         "decoding", soft_thinking_rows),
    "codi": Row("codi", "continuous thoughts distilled from the model's own CoT (CODI)", codi_rows),
    "icot": Row("latent", "CoT tokens removed from the left on a schedule (iCoT-SI), from the cot-sft model", icot_rows),
    "coconut": Row("latent", "curriculum of continuous thoughts (Coconut), from the cot-sft model", coconut_rows),
}

