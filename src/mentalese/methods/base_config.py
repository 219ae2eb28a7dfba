"""The fields every training run has, declared once with their help text and their validation.

    TrainRunFields        SFT, CODI, BoLT: the base model (hub name, path or tiny-<arch>), tiny-model
                          options, dtype, the benchmark and its generator options
    SupervisedRunFields   SFT, CODI (training on a benchmark's split): + split, data dir, example limit,
                          answer prompt, LoRA, resume

Both extend transformers `TrainingArguments`, so every Trainer knob sits beside them in one recipe.
A method that needs another default for a shared field redeclares it with `shared_field(...)`: the
type, help text and validation stay the ones written here.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field
from typing import Any

import torch
from transformers import TrainingArguments

from mentalese.errors import MentaleseError
from mentalese.methods.formatting import ANSWER_PROMPT
from mentalese.models.loading import LoraSettings, resolve_dtype
from mentalese.models.tiny import TINY_ARCHS, TINY_PREFIX


@dataclass
class TrainRunFields(TrainingArguments):
    """Model and task of a training run (Trainer fields keep their meaning)."""

    model_name_or_path: str = field(default="tiny-gpt2", metadata={
        "help": "hub name or local path; 'tiny-<gpt2|llama|qwen2|qwen3>' builds a random tiny model with a "
                "character tokenizer (the toy task)"})
    tiny_model_options: dict = field(default_factory=dict, metadata={
        "help": "config overrides for tiny-<arch> models (e.g. {n_layer: 4})"})
    dtype: str = field(default="float32", metadata={
        "help": "model dtype: float32, bfloat16, float16, auto (bf16 on GPUs that have it)"})
    task: str = field(default="chain", metadata={"help": "registered benchmark (`mentalese benchmarks` lists them)"})
    task_options: dict = field(default_factory=dict, metadata={
        "help": "options of the benchmark's loader (e.g. chain: num_steps, modulus, num_examples)"})

    def __post_init__(self) -> None:
        if self.model_name_or_path.startswith(TINY_PREFIX) and self.tiny_arch not in TINY_ARCHS:
            raise MentaleseError(f"unknown tiny model {self.model_name_or_path!r}; "
                                 f"choose tiny-{{{','.join(sorted(TINY_ARCHS))}}}")
        if self.tiny_model_options and not self.model_name_or_path.startswith(TINY_PREFIX):
            raise MentaleseError(f"tiny_model_options apply to tiny-<arch> models only, not "
                                 f"{self.model_name_or_path!r}")
        resolve_dtype(self.dtype, torch.device("cpu"))  # an unknown dtype fails here, before any run dir exists
        super().__post_init__()

    @property
    def tiny_arch(self) -> str:
        return self.model_name_or_path[len(TINY_PREFIX):]


@dataclass
class SupervisedRunFields(TrainRunFields):
    """+ the training data of a benchmark's split, the answer prompt, LoRA and resuming."""

    train_split: str = field(default="train", metadata={"help": "split of `task` to train on"})
    data_dir: str | None = field(default=None, metadata={"help": "benchmark data directory"})
    train_limit: int | None = field(default=None, metadata={"help": "use only the first N training examples"})
    answer_prompt: str = field(default=ANSWER_PROMPT, metadata={"help": "text before the final answer"})
    lora: LoraSettings | None = field(default=None, metadata={"help": "LoRA settings; None = full fine-tuning"})
    resume: bool = field(default=True, metadata={"help": "resume from the last checkpoint in output_dir"})

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):
            self.lora = LoraSettings(**self.lora)
        if self.lora is not None:
            check_lora(self.lora)
        if self.train_limit is not None and self.train_limit < 1:
            raise MentaleseError(f"train_limit must be >= 1, got {self.train_limit}")
        super().__post_init__()


def check_lora(lora: LoraSettings) -> None:
    """One-line errors for LoRA settings PEFT would reject later (or accept and train nothing)."""
    if lora.r < 1:
        raise MentaleseError(f"lora.r must be >= 1, got {lora.r}")
    if lora.alpha <= 0:
        raise MentaleseError(f"lora.alpha must be > 0, got {lora.alpha}")
    if not 0.0 <= lora.dropout < 1.0:
        raise MentaleseError(f"lora.dropout must be in [0, 1), got {lora.dropout}")
    if not lora.target_modules:
        raise MentaleseError("lora.target_modules must name at least one module (or be 'all-linear')")


# name -> the field as declared here (what `shared_field` copies and tests/test_base_config.py checks)
SHARED_FIELDS = {name: base.__dataclass_fields__[name] for base in (TrainRunFields, SupervisedRunFields)
                 for name in vars(base)["__annotations__"]}
_BASE_DEFAULT = object()


def shared_field(name: str, default: Any = _BASE_DEFAULT, note: str = "") -> Any:
    """The shared field `name` for a method's config, with another `default` and/or `note` added to its help."""
    base = SHARED_FIELDS.get(name)
    if base is None:
        raise MentaleseError(f"{name!r} is not a shared training field")
    if default is _BASE_DEFAULT:
        kept = {"default": base.default} if base.default is not MISSING else {"default_factory": base.default_factory}
    else:
        kept = {"default": default}
    help_text = base.metadata["help"] + (f" ({note})" if note else "")
    return field(**kept, metadata={**base.metadata, "help": help_text, "shared": True})
