"""iCoT-SI training rows in the library's CoT layout, with the CoT span the removal works on.

    prompt                  spec.prompt.format(question)          label -100
    CoT                     cot_text(cot_step_separator)          labelled, removable
    separator               "\\n"                                  labelled; removable when remove_separator
    answer                  "The answer is: X" + eos              labelled

Each piece is tokenised alone, so once the whole removable span is gone the row is token for token the
No-CoT-SFT row (methods/formatting.py) and the trained model answers in the No-CoT format that
`mentalese eval` reads. The official code has ' question <eos> cot <eos> #### answer <eos>' instead
(removal.py); the removal itself is the same function on both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from mentalese.errors import MentaleseError
from mentalese.methods.formatting import answer_text
from mentalese.methods.icot.removal import IGNORE_INDEX
from mentalese.tasks.example import Example
from mentalese.tasks.registry import get_benchmark, load_benchmark, render_prompt

log = logging.getLogger(__name__)
SEPARATOR = "\n"  # between CoT and answer prompt, as in methods/formatting.py target_text


@dataclass
class ICoTRow:
    input_ids: list[int]
    labels: list[int]
    cot_start: int  # removable span [cot_start, cot_end)
    cot_end: int

    def to_dict(self) -> dict[str, Any]:
        return {"input_ids": self.input_ids, "labels": self.labels, "cot_start": self.cot_start,
                "cot_end": self.cot_end}


def tokenize_icot_example(example: Example, tokenizer, prompt_template: str, answer_prompt: str,
                          step_sep: str = " ", remove_separator: bool = True) -> ICoTRow:
    if tokenizer.eos_token_id is None:
        raise MentaleseError("tokenizer has no eos token; iCoT targets end with eos")
    if not example.cot_steps:
        raise MentaleseError(f"example {example.id!r} has no CoT steps")
    prompt = tokenizer(render_prompt(prompt_template, example.question))["input_ids"]
    cot = tokenizer(example.cot_text(step_sep), add_special_tokens=False)["input_ids"]
    sep = tokenizer(SEPARATOR, add_special_tokens=False)["input_ids"]
    answer = tokenizer(answer_text(example, answer_prompt), add_special_tokens=False)["input_ids"]
    answer = answer + [tokenizer.eos_token_id]
    target = cot + sep + answer
    end = len(prompt) + len(cot) + (len(sep) if remove_separator else 0)
    return ICoTRow(prompt + target, [IGNORE_INDEX] * len(prompt) + target, len(prompt), end)


def training_examples(cfg) -> list[Example]:
    """The benchmark split, or for mult-NxN with `generated_train_examples` fresh problems (valid/test excluded)."""
    if cfg.generated_train_examples is None:
        return load_benchmark(cfg.task, cfg.train_split, data_dir=cfg.data_dir, limit=cfg.train_limit,
                              **cfg.task_options)
    from mentalese.tasks.formats import generate_multiplication

    spec = get_benchmark(cfg.task)
    digits = int(cfg.task.removeprefix("mult-").split("x")[0])
    held_out = {ex.question for split in spec.splits
                for ex in load_benchmark(cfg.task, split, data_dir=cfg.data_dir)}
    examples = generate_multiplication(digits, cfg.generated_train_examples, cfg.seed, held_out)
    return examples[: cfg.train_limit] if cfg.train_limit else examples


def build_icot_rows(cfg, tokenizer) -> tuple[list[ICoTRow], dict[str, int]]:
    """Tokenised rows and the counts of what was skipped (no CoT, too long); an error when none are left."""
    spec = get_benchmark(cfg.task)
    rows, skipped_no_cot, skipped_long = [], 0, 0
    for ex in training_examples(cfg):
        if not ex.cot_steps:
            skipped_no_cot += 1
            continue
        row = tokenize_icot_example(ex, tokenizer, spec.prompt, cfg.answer_prompt, cfg.cot_step_separator,
                                    cfg.remove_separator)
        if len(row.input_ids) > cfg.max_length:
            skipped_long += 1
            continue
        rows.append(row)
    counts = {"train_examples": len(rows), "skipped_no_cot": skipped_no_cot, "skipped_too_long": skipped_long,
              "longest_cot_tokens": max((r.cot_end - r.cot_start for r in rows), default=0)}
    if skipped_no_cot or skipped_long:
        log.warning("skipped %d examples without CoT and %d longer than %d tokens",
                    skipped_no_cot, skipped_long, cfg.max_length)
    if not rows:
        raise MentaleseError(f"no training examples left from {cfg.task}/{cfg.train_split} ({counts})")
    return rows, counts


@dataclass
class ICoTCollator:
    """Right-pads rows (input pad_id, labels -100) and carries the spans for the removal in the trainer."""

    pad_id: int

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        for b, f in enumerate(features):
            ids[b, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
            labels[b, : len(f["labels"])] = torch.tensor(f["labels"])
        return {"input_ids": ids, "labels": labels,
                "cot_start": torch.tensor([f["cot_start"] for f in features]),
                "cot_end": torch.tensor([f["cot_end"] for f in features]),
                "seq_end": torch.tensor([len(f["input_ids"]) for f in features])}
