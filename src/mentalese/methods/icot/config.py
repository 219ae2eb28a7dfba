"""`ICoTConfig`: Stepwise Internalization (iCoT-SI; Deng, Choi, Shieber 2024, arXiv 2405.14838).

Defaults follow the official code (da03/Internalize_CoT_Step_by_Step @c2e3891) as its README runs it
(`--reset_optimizer`, smoothing lambda 4, 8 tokens per epoch, lr 5e-5, constant learning rate). Where the
paper, the argparse defaults, the README and this library differ, the field's help says so; the full
list is in docs/icot.md.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from mentalese.errors import MentaleseError
from mentalese.methods.base_config import SupervisedRunFields, shared_field
from mentalese.methods.icot.removal import REMOVAL_SIDES

log = logging.getLogger(__name__)


@dataclass
class ICoTConfig(SupervisedRunFields):
    """Fine-tune a CoT model while its CoT tokens are removed from the left, a few more every epoch (or every
    N steps), until it answers without any CoT. The result is a plain causal LM (evaluate it as one)."""

    # --- the removal schedule ---
    remove_per_epoch: float | None = field(default=8.0, metadata={
        "help": "official schedule: CoT tokens removed per epoch (README: 8). One more token every "
                "round(optimizer steps per epoch / remove_per_epoch) optimizer steps, the steps per epoch "
                "counted from the training set size and the batch size. null to use remove_every_steps"})
    remove_every_steps: int | None = field(default=None, metadata={
        "help": "step schedule (ours, for step-based runs): one more CoT token removed every N optimizer steps; "
                "needs remove_per_epoch: null (one owner for the schedule)"})
    remove_start_from: int = field(default=0, metadata={
        "help": "tokens scheduled for removal at step 0 (official --remove_start_from, default 0)"})
    remove_all_when_remove_beyond: float = field(default=math.inf, metadata={
        "help": "once the scheduled count reaches this, the whole CoT is removed (official: inf; the GSM8K "
                "README command: 39)"})
    removal_smoothing_lambda: float = field(default=4.0, metadata={
        "help": "removal smoothing: each row removes s + o tokens, o ~ P(o) ∝ exp(-lambda o), o < 100 "
                "(README and paper: 4; official argparse default: inf = no smoothing)"})
    removal_side: str = field(default="left", metadata={
        "help": "remove from the start of the CoT (left, the paper and README) or from its end (right)"})
    keep_position: bool = field(default=False, metadata={
        "help": "shift position ids so kept tokens keep their original positions (official option, off in "
                "every README command; `mentalese eval` decodes with plain positions, so leave it off for "
                "models you evaluate there)"})
    remove_separator: bool = field(default=True, metadata={
        "help": "the newline between CoT and answer prompt is the CoT's last token and goes with it, so the "
                "final model writes exactly the No-CoT-SFT target (official: its CoT/answer <eos> stays; the "
                "authors' online GSM8K demo removes it too)"})
    reset_optimizer: bool = field(default=True, metadata={
        "help": "fresh AdamW state whenever the scheduled count grows, unless the previous batch had lost its "
                "whole CoT already (official --reset_optimizer, passed by every README command; the argparse "
                "default is off)"})
    max_len_train: int = field(default=-1, metadata={
        "help": "rows longer than this after removal are left out of the loss and counted (-1: off; GSM8K "
                "README: 150; the official code skips the whole batch when its longest row is longer)"})

    # --- data ---
    max_length: int = field(default=1024, metadata={
        "help": "longer examples (before any removal) are skipped and counted (official: no limit)"})
    cot_step_separator: str = field(default=" ", metadata={
        "help": "joins the CoT steps (multiplication recipes: ' + ', the official files' separator)"})
    generated_train_examples: int | None = field(default=None, metadata={
        "help": "mult-NxN only (no train split is held): train on this many generate_multiplication(N, ., seed) "
                "problems, valid/test questions excluded (official train files: 808k lines)"})
    answer_prompt: str = shared_field("answer_prompt", note="multiplication recipes: '' (exact-match answers)")

    # --- TrainingArguments defaults the official code uses ---
    learning_rate: float = field(default=5e-5, metadata={"help": "official: 5e-5 (GPT-2), 1e-5 (Mistral-7B)"})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "official: 32 (GPT-2), 16 (Mistral)"})
    lr_scheduler_type: str = field(default="constant", metadata={
        "help": "official: constant (torch AdamW without a scheduler)"})
    weight_decay: float = field(default=0.01, metadata={
        "help": "official: torch AdamW's default 0.01 on every weight (Trainer exempts biases and norms)"})

    def __post_init__(self) -> None:
        if self.remove_per_epoch is not None and not self.remove_per_epoch > 0:
            raise MentaleseError(f"remove_per_epoch must be > 0, got {self.remove_per_epoch}")
        if self.remove_every_steps is not None and self.remove_every_steps < 1:
            raise MentaleseError(f"remove_every_steps must be >= 1, got {self.remove_every_steps}")
        if self.remove_per_epoch is not None and self.remove_every_steps is not None:
            raise MentaleseError("set one schedule: remove_per_epoch or remove_every_steps "
                                 "(set remove_per_epoch: null to use remove_every_steps)")
        if self.remove_per_epoch is None and self.remove_every_steps is None:
            raise MentaleseError("no removal schedule: set remove_per_epoch (> 0) or remove_every_steps (>= 1)")
        if self.remove_start_from < 0:
            raise MentaleseError(f"remove_start_from must be >= 0, got {self.remove_start_from}")
        if not self.remove_all_when_remove_beyond >= 1:
            raise MentaleseError(f"remove_all_when_remove_beyond must be >= 1 or inf, "
                                 f"got {self.remove_all_when_remove_beyond}")
        if not self.removal_smoothing_lambda > 0:
            raise MentaleseError(f"removal_smoothing_lambda must be > 0 (or inf), got {self.removal_smoothing_lambda}")
        if self.removal_side not in REMOVAL_SIDES:
            raise MentaleseError(f"removal_side must be one of {', '.join(REMOVAL_SIDES)}, got {self.removal_side!r}")
        if self.max_len_train == 0 or self.max_len_train < -1:
            raise MentaleseError(f"max_len_train must be -1 (off) or >= 1, got {self.max_len_train}")
        if self.max_length < 8:
            raise MentaleseError(f"max_length must be >= 8, got {self.max_length}")
        if self.generated_train_examples is not None:
            if self.generated_train_examples < 1:
                raise MentaleseError(f"generated_train_examples must be >= 1, got {self.generated_train_examples}")
            if not self.task.startswith("mult-"):
                raise MentaleseError(f"generated_train_examples applies to mult-NxN tasks only, not {self.task!r}")
        if self.keep_position:
            log.warning("keep_position: the model learns shifted positions; `mentalese eval` decodes with "
                        "plain ones")
        self.remove_unused_columns = False  # the collator needs the CoT span columns
        super().__post_init__()
