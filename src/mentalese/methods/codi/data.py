"""CODI examples: tokenised pieces, skip rules with counts, and the batch layout the loss expects.

A tokenised example keeps its pieces apart (as the official code does):

    question_ids = tokenizer(prompt)                     e.g. "7+5*3-4\\n" (+ BOS when the tokenizer adds one)
    cot_ids      = tokenizer(steps joined + "\\n")        last step dropped unless include_last_cot
    answer_ids   = tokenizer(answer_prompt) + tokenizer(" " + answer) + [eos]
    distill_index: index in answer_ids of the distilled token (default: the token before the first
                   non-whitespace answer token)

`collate_codi` turns a list of them into padded tensors:
    teacher   right-padded  question + CoT + answer       (labels on CoT + answer)
    student   left-padded   question + <bot>              (prefill; positions count real tokens only)
    decoder   right-padded  <eot> + answer                (labels on answer; positions continue after
                                                           the prefill and the latent steps)
    step_result_ids     [B, CoT steps]  first token of each step's result (all steps, the last one
                                        included), IGNORE_INDEX-padded: step_supervision.kind=result_token
    step_decoder_ids    [B, n+1, L]     kind=step_decoder only (+ step_decoder_mask): per latent <bot>..thought n,
                                        the teacher CoT step it rebuilds (+ eos; the last latent takes the rest)
Step targets are built in methods/step_supervision.py; a row with nothing to supervise is skipped and counted
("no_step_targets") when step supervision is on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from mentalese.errors import MentaleseError
from mentalese.methods.formatting import IGNORE_INDEX
from mentalese.methods.step_supervision import collate_step_targets, step_decoder_targets, step_result_ids
from mentalese.tasks.example import Example
from mentalese.tasks.registry import render_prompt

log = logging.getLogger(__name__)


@dataclass
class CODIExample:
    question_ids: list[int]
    cot_ids: list[int]
    answer_ids: list[int]
    distill_index: int
    step_result_ids: list[int] = field(default_factory=list)  # per CoT step: first token of its result or IGNORE
    step_decoder_ids: list[list[int]] = field(default_factory=list)  # per latent slot: step ids + eos, [] = none

    def to_dict(self) -> dict[str, Any]:
        return dict(question_ids=self.question_ids, cot_ids=self.cot_ids, answer_ids=self.answer_ids,
                    distill_index=self.distill_index, step_result_ids=self.step_result_ids,
                    step_decoder_ids=self.step_decoder_ids)


def distill_index(tokenizer, prompt_ids: list[int], value_ids: list[int], token: str | None, offset: int) -> int:
    """Index in prompt_ids + value_ids of the distilled token."""
    ids = prompt_ids + value_ids
    if token is not None:
        matches = [i for i, t in enumerate(prompt_ids) if tokenizer.decode([t]) == token]
        if not matches:
            raise MentaleseError(f"distill_token {token!r} is not a token of the answer prompt")
        index = matches[-1]
    else:
        first = next((i for i, t in enumerate(value_ids) if tokenizer.decode([t]).strip()), 0)
        index = len(prompt_ids) + first - 1
    index += offset
    if not 0 <= index < len(ids):
        raise MentaleseError(f"distilled position {index} falls outside the answer ({len(ids)} tokens)")
    return index


def tokenize_codi_example(example: Example, tokenizer, prompt_template: str, cfg) -> CODIExample | str:
    """A `CODIExample`, or the reason (a short string) the example is skipped."""
    if cfg.drop_non_numeric_answers and not example.answer[:1].isdigit():
        return "non_numeric_answer"
    steps = example.cot_steps if cfg.include_last_cot else example.cot_steps[:-1]
    if not example.cot_steps:
        return "no_cot"
    if not steps:
        return "cot_empty_after_dropping_last_step"
    question_ids = tokenizer(render_prompt(prompt_template, example.question))["input_ids"]
    cot_ids = tokenizer(cfg.cot_step_separator.join(steps) + "\n", add_special_tokens=False)["input_ids"]
    prompt_ids = tokenizer(cfg.answer_prompt, add_special_tokens=False)["input_ids"]
    value_ids = tokenizer(" " + example.answer, add_special_tokens=False)["input_ids"]
    if max(len(question_ids), len(cot_ids), len(prompt_ids) + len(value_ids) + 1) > cfg.max_length:
        return "too_long"
    index = distill_index(tokenizer, prompt_ids, value_ids, cfg.distill_token, cfg.distill_offset)
    results = step_result_ids(tokenizer, example.cot_steps)  # every step: the last one's result is the answer
    sup = cfg.step_supervision
    decoder_ids = []
    if sup.kind == "step_decoder":  # SIM-CoT: the teacher's steps, one per latent <bot>, thought 1, .., thought n
        decoder_ids = step_decoder_targets(tokenizer, steps, (cfg.num_latent + 1) // sup.thoughts_per_step,
                                           cfg.cot_step_separator,
                                           example.answer if sup.beyond_steps == "answer" else None)
    if sup.on and not _has_step_target(sup, results, decoder_ids, cfg.num_latent):
        return "no_step_targets"
    return CODIExample(question_ids, cot_ids, prompt_ids + value_ids + [tokenizer.eos_token_id], index,
                       results, decoder_ids)


def _has_step_target(sup, results: list[int], decoder_ids: list[list[int]], num_latent: int) -> bool:
    if sup.kind == "result_token":  # the steps that have a thought: ceil(n / c)
        return any(r != IGNORE_INDEX for r in results[:-(-num_latent // sup.thoughts_per_step)])
    return any(decoder_ids)


def tokenize_codi_dataset(examples: Sequence[Example], tokenizer, prompt_template: str, cfg
                          ) -> tuple[list[CODIExample], dict[str, int]]:
    """Tokenise every example; skipped ones are counted by reason (never silently dropped)."""
    if tokenizer.eos_token_id is None:
        raise MentaleseError("tokenizer has no eos token; CODI answers end with eos")
    kept, counts = [], {}
    for ex in examples:
        out = tokenize_codi_example(ex, tokenizer, prompt_template, cfg)
        if isinstance(out, str):
            counts[f"skipped_{out}"] = counts.get(f"skipped_{out}", 0) + 1
        else:
            kept.append(out)
    if counts:
        log.warning("CODI data: kept %d, skipped %s", len(kept), counts)
    if not kept:
        raise MentaleseError(f"no CODI training examples left ({counts})")
    return kept, {"train_examples": len(kept), **counts}


def _pad(rows: Sequence[Sequence[int]], value: int, left: bool = False) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, r in enumerate(rows):
        if r and left:
            out[i, width - len(r):] = torch.tensor(r)
        elif r:
            out[i, : len(r)] = torch.tensor(r)
    return out


def collate_codi(rows: Sequence[CODIExample | dict], pad_id: int, bot_id: int, eot_id: int) -> dict[str, torch.Tensor]:
    """Padded tensors for `codi_loss` (see the module docstring for the layout)."""
    rows = [r if isinstance(r, CODIExample) else CODIExample(**r) for r in rows]
    teacher = [r.question_ids + r.cot_ids + r.answer_ids for r in rows]
    teacher_labels = [[IGNORE_INDEX] * len(r.question_ids) + r.cot_ids + r.answer_ids for r in rows]
    student = [r.question_ids + [bot_id] for r in rows]
    decoder = [[eot_id] + r.answer_ids for r in rows]
    decoder_labels = [[IGNORE_INDEX] + r.answer_ids for r in rows]
    return {
        "teacher_ids": _pad(teacher, pad_id),
        "teacher_mask": _pad([[1] * len(t) for t in teacher], 0),
        "teacher_labels": _pad(teacher_labels, IGNORE_INDEX),
        "teacher_distill_pos": torch.tensor([len(r.question_ids) + len(r.cot_ids) + r.distill_index for r in rows]),
        "student_ids": _pad(student, pad_id, left=True),
        "student_mask": _pad([[1] * len(s) for s in student], 0, left=True),
        "decoder_ids": _pad(decoder, pad_id),
        "decoder_mask": _pad([[1] * len(d) for d in decoder], 0),
        "decoder_labels": _pad(decoder_labels, IGNORE_INDEX),
        "student_distill_pos": torch.tensor([1 + r.distill_index for r in rows]),
        **collate_step_targets([r.step_result_ids for r in rows], [r.step_decoder_ids for r in rows]),
    }


class CODICollator:
    def __init__(self, pad_id: int, bot_id: int, eot_id: int):
        self.pad_id, self.bot_id, self.eot_id = pad_id, bot_id, eot_id

    def __call__(self, rows):
        return collate_codi(rows, self.pad_id, self.bot_id, self.eot_id)
