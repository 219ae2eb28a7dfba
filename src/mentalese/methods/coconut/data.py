"""Coconut examples: tokenised pieces, the sequence of each curriculum stage, and the official batch layout.

An example at stage k (official `get_cot_latent_dataset`; `latent_steps` in config.py):

    input_ids = question + <|start-latent|> + <|latent|> * (m * c) + <|end-latent|> + rest + answer
    labels    = -100 on question, markers and latents; the ids themselves on rest + answer
    question  = tokenizer(prompt)                          (BOS etc. when the tokenizer adds them)
    rest      = tokenizer(sep.join(steps[r:]) + "\\n")      the steps not removed ("" when r = all)
    answer    = tokenizer(answer_prompt + " " + answer) + [eos]
    (r, m)    = latent_steps(k, len(steps), ...): r steps removed, m steps' worth of thoughts

so stage 0 is CoT-SFT's sequence with two empty markers, and the final stage is question, thoughts,
answer. `collate_coconut` pads as the official `MyCollator`: each row is shifted right (left padding,
mask 0) so that every row's first <|latent|> sits in the same column (the latent passes then share
one KV cache), then right-padded; position ids count each row's own tokens from 0.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from mentalese.errors import MentaleseError
from mentalese.methods.coconut.config import latent_steps
from mentalese.methods.formatting import IGNORE_INDEX, answer_text
from mentalese.methods.step_supervision import collate_step_targets, step_decoder_targets, step_result_ids
from mentalese.tasks.example import Example
from mentalese.tasks.registry import render_prompt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LatentTokenIds:
    start: int  # <|start-latent|>
    latent: int  # <|latent|>
    end: int  # <|end-latent|>


@dataclass
class CoconutExample:
    question_ids: list[int]
    steps: list[str]
    answer_ids: list[int]  # answer prompt + answer + eos
    answer: str = ""  # the answer text (step_decoder with beyond_steps=answer)
    step_results: list[int] | None = None  # first token of each step's result (step supervision on)


def tokenize_coconut_examples(examples: Sequence[Example], tokenizer, prompt_template: str, cfg
                              ) -> tuple[list[CoconutExample], dict[str, int]]:
    """Tokenise question and answer of every example; skipped ones are counted by reason, never dropped
    silently, and an error is raised when none remain."""
    if tokenizer.eos_token_id is None:
        raise MentaleseError("tokenizer has no eos token; Coconut answers end with eos")
    kept, counts = [], {}
    for ex in examples:
        if not ex.cot_steps:
            counts["skipped_no_cot"] = counts.get("skipped_no_cot", 0) + 1
            continue
        question = tokenizer(render_prompt(prompt_template, ex.question))["input_ids"]
        answer = tokenizer(answer_text(ex, cfg.answer_prompt), add_special_tokens=False)["input_ids"]
        results = step_result_ids(tokenizer, ex.cot_steps) if cfg.step_supervision.on else None
        kept.append(CoconutExample(question, list(ex.cot_steps), answer + [tokenizer.eos_token_id], ex.answer,
                                   results))
    if cfg.max_length is not None and kept:
        lengths = _full_cot_lengths(kept, tokenizer, cfg.cot_step_separator)
        too_long = sum(n > cfg.max_length for n in lengths)
        if too_long:
            counts["skipped_too_long"] = too_long
            kept = [ex for ex, n in zip(kept, lengths) if n <= cfg.max_length]
    if counts:
        log.warning("Coconut data: kept %d, skipped %s", len(kept), counts)
    if not kept:
        raise MentaleseError(f"no Coconut training examples left ({counts}): every example needs CoT steps")
    most = max(len(ex.steps) for ex in kept)
    fewer = sum(len(ex.steps) < cfg.max_latent_stage for ex in kept)
    if fewer:  # the official behaviour, made visible: see latent_steps
        log.warning("Coconut data: %d of %d examples have fewer than max_latent_stage=%d steps (at most %d in all):"
                    " at stages past their steps all their steps are removed and the stage's k*c thoughts kept",
                    fewer, len(kept), cfg.max_latent_stage, most)
    return kept, {"train_examples": len(kept), **counts, "fewer_steps_than_max_latent_stage": fewer,
                  "most_steps": most}


def _full_cot_lengths(examples: list[CoconutExample], tokenizer, sep: str) -> list[int]:
    cots = tokenizer([sep.join(ex.steps) + "\n" for ex in examples], add_special_tokens=False)["input_ids"]
    return [len(ex.question_ids) + 2 + len(cot) + len(ex.answer_ids) for ex, cot in zip(examples, cots)]


def stage_of_example(stage: int, num_steps: int, uniform_prob: float, rng: random.Random) -> int:
    """The stage an example trains at: `stage`, or with probability uniform_prob one drawn uniformly
    from 0..num_steps (official: `random.choice(range(len(steps) + 1))`)."""
    if uniform_prob > 0 and rng.random() < uniform_prob:
        return rng.choice(range(num_steps + 1))
    return stage


def stage_rows(examples: Sequence[CoconutExample], tokenizer, stage: int, cfg, ids: LatentTokenIds,
               seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The training rows (input_ids, labels) of every example at `stage` (module docstring)."""
    rng = random.Random(f"coconut-stage-{seed}-{stage}")
    stages = [stage_of_example(stage, len(ex.steps), cfg.uniform_prob, rng) for ex in examples]
    plans = [latent_steps(k, len(ex.steps), cfg.max_latent_stage, cfg.pad_latent_to_max)
             for k, ex in zip(stages, examples)]
    rest_texts = [cfg.cot_step_separator.join(ex.steps[removed:]) + "\n" if removed < len(ex.steps) else ""
                  for ex, (removed, _) in zip(examples, plans)]
    rest_ids = tokenizer(rest_texts, add_special_tokens=False)["input_ids"]
    rows, sup = [], cfg.step_supervision
    for ex, (removed, thought_steps), rest in zip(examples, plans, rest_ids):
        n = thought_steps * cfg.c_thought
        head = ex.question_ids + [ids.start] + [ids.latent] * n + [ids.end]
        tail = rest + ex.answer_ids
        row = {"input_ids": head + tail, "labels": [IGNORE_INDEX] * len(head) + tail}
        if sup.on:
            row.update(step_targets(ex, removed, thought_steps, tokenizer, cfg))
        rows.append(row)
    mixed = sum(k != stage for k in stages)
    return rows, ({"stage_mixed_examples": mixed} if cfg.uniform_prob > 0 else {})


def step_targets(ex: CoconutExample, removed: int, thought_steps: int, tokenizer, cfg) -> dict[str, list]:
    """Step supervision of one row: thought j (slot j // c) stands for removed step j // c. result_token: the
    removed steps' result tokens (thoughts past them unsupervised); step_decoder: one target per slot, the last
    slot of a row whose every step is removed also takes the steps past the slots (methods/step_supervision.py)."""
    sup = cfg.step_supervision
    out: dict[str, list] = {"step_result_ids": list(ex.step_results[:removed])}
    if sup.kind == "step_decoder" and thought_steps:
        steps = ex.steps if removed == len(ex.steps) else ex.steps[:removed]
        out["step_decoder_ids"] = step_decoder_targets(tokenizer, steps, thought_steps, cfg.cot_step_separator,
                                                       ex.answer if sup.beyond_steps == "answer" else None)
    elif sup.kind == "step_decoder":
        out["step_decoder_ids"] = []
    return out


def collate_coconut(rows: Sequence[dict], pad_id: int, latent_id: int) -> dict[str, torch.Tensor]:
    """Pad like the official MyCollator: first latents aligned by left padding, then right padding."""
    firsts = [r["input_ids"].index(latent_id) if latent_id in r["input_ids"] else None for r in rows]
    aligned = max((f for f in firsts if f is not None), default=0)
    shifts = [aligned - f if f is not None else 0 for f in firsts]
    width = max(s + len(r["input_ids"]) for s, r in zip(shifts, rows))
    B = len(rows)
    out = {"input_ids": torch.full((B, width), pad_id, dtype=torch.long),
           "attention_mask": torch.zeros((B, width), dtype=torch.long),
           "labels": torch.full((B, width), IGNORE_INDEX, dtype=torch.long),
           "position_ids": torch.zeros((B, width), dtype=torch.long)}
    for i, (s, r) in enumerate(zip(shifts, rows)):
        n = len(r["input_ids"])
        out["input_ids"][i, s: s + n] = torch.tensor(r["input_ids"])
        out["attention_mask"][i, s: s + n] = 1
        out["labels"][i, s: s + n] = torch.tensor(r.get("labels", r["input_ids"]))
        out["position_ids"][i, s: s + n] = torch.arange(n)
    if "step_result_ids" in rows[0]:
        out.update(collate_step_targets([r["step_result_ids"] for r in rows],
                                        [r["step_decoder_ids"] for r in rows] if "step_decoder_ids" in rows[0]
                                        else None))
    return out


class CoconutCollator:
    def __init__(self, pad_id: int, latent_id: int):
        self.pad_id, self.latent_id = pad_id, latent_id

    def __call__(self, rows):
        return collate_coconut(rows, self.pad_id, self.latent_id)
