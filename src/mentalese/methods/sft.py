"""CoT-SFT and No-CoT-SFT: the baselines every latent method is compared with.

`SFTConfig` extends transformers `TrainingArguments` (TRL style) through the fields every training
run shares (methods/base_config.py), so every Trainer knob (checkpointing, resume, accelerate
DDP/FSDP, logging, bf16) is available from the same YAML recipe. `train_sft` writes into `output_dir`:

    config.yaml          the resolved config
    checkpoint-*/        Trainer checkpoints (training resumes from the last one)
    model/               the final model + tokenizer in HF format (from_pretrained-able; LoRA merged)
    adapter/             the LoRA adapter alone (PEFT format), when training with LoRA
    train_metrics.json   Trainer's train metrics plus data counts
    trainer_state.json   the final Trainer state (loss history)
    train_done.json      written last: the run is finished (a rerun changes nothing; methods/checkpoints.py)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import DataCollatorForSeq2Seq, Trainer

from mentalese.errors import MentaleseError
from mentalese.methods.base_config import SupervisedRunFields
from mentalese.methods.checkpoints import train_resuming
from mentalese.methods.formatting import tokenize_sft_example
from mentalese.models.loading import apply_lora, load_model_and_tokenizer
from mentalese.models.tiny import resolve_base_model
from mentalese.tasks.registry import get_benchmark, load_benchmark

log = logging.getLogger(__name__)


@dataclass
class SFTConfig(SupervisedRunFields):
    """Supervised fine-tuning on question -> (CoT +) answer. Model, task, LoRA: methods/base_config.py."""

    cot: bool = field(default=True, metadata={"help": "train with the CoT (CoT-SFT) or without (No-CoT-SFT)"})
    max_length: int = field(default=512, metadata={"help": "longer examples are skipped and counted"})

    def __post_init__(self) -> None:
        if self.max_length < 8:
            raise MentaleseError(f"max_length must be >= 8, got {self.max_length}")
        super().__post_init__()


def prepare_model(cfg: SFTConfig, special_tokens: list[str] | None = None):
    """Load (or, for tiny-*, build once in output_dir/init_model) the model and tokenizer."""
    path = resolve_base_model(cfg.model_name_or_path, cfg.output_dir, cfg.seed, cfg.tiny_model_options)
    model, tokenizer = load_model_and_tokenizer(path, dtype=cfg.dtype, device=str(cfg.device),  # this rank's device
                                                special_tokens=special_tokens)
    if cfg.lora is not None:
        model = apply_lora(model, cfg.lora)
    return model, tokenizer


def build_sft_dataset(cfg: SFTConfig, tokenizer) -> tuple[Any, dict[str, int]]:
    from datasets import Dataset

    spec = get_benchmark(cfg.task)
    examples = load_benchmark(cfg.task, cfg.train_split, data_dir=cfg.data_dir, limit=cfg.train_limit,
                              **cfg.task_options)
    rows, skipped_long, skipped_no_cot = [], 0, 0
    for ex in examples:
        if cfg.cot and not ex.cot_steps:
            skipped_no_cot += 1
            continue
        tok = tokenize_sft_example(ex, tokenizer, spec.prompt, cfg.cot, cfg.answer_prompt)
        if len(tok.input_ids) > cfg.max_length:
            skipped_long += 1
            continue
        rows.append({"input_ids": tok.input_ids, "attention_mask": [1] * len(tok.input_ids), "labels": tok.labels})
    counts = {"train_examples": len(rows), "skipped_too_long": skipped_long, "skipped_no_cot": skipped_no_cot}
    if skipped_long or skipped_no_cot:
        log.warning("skipped %d examples longer than %d tokens and %d without CoT",
                    skipped_long, cfg.max_length, skipped_no_cot)
    if not rows:
        raise MentaleseError(f"no training examples left from {cfg.task}/{cfg.train_split} ({counts})")
    return Dataset.from_list(rows), counts


def save_sft_model(trainer: Trainer, cfg: SFTConfig, final: Path) -> None:
    """The final HF model + tokenizer in `final` (LoRA: the adapter beside it, and the merged model).
    Every rank calls it (Trainer.save_model is a collective); files come from the main process."""
    if cfg.lora is not None:  # keep the adapter, and save a merged model that loads like any other
        trainer.save_model(str(final.parent / "adapter"))
        if cfg.should_save:
            trainer.accelerator.unwrap_model(trainer.model).merge_and_unload().save_pretrained(str(final))
    else:
        trainer.save_model(str(final))
    if cfg.should_save:
        trainer.processing_class.save_pretrained(str(final))


def train_sft(cfg: SFTConfig, callbacks: list | None = None) -> Path:
    """Train (or continue, or leave a finished run as it is), save the final HF model to output_dir/model,
    return that path. Under a distributed launch every rank calls this; the main process writes the files."""
    get_benchmark(cfg.task)  # a typo writes nothing

    def build_trainer():
        with cfg.main_process_first(local=cfg.save_on_each_node, desc="building the model"):  # tiny-*: once
            model, tokenizer = prepare_model(cfg)
        dataset, counts = build_sft_dataset(cfg, tokenizer)
        tokenizer.padding_side = "right"
        trainer = Trainer(model=model, args=cfg, train_dataset=dataset, processing_class=tokenizer,
                          data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
                          callbacks=callbacks)
        return trainer, counts

    return train_resuming(cfg, build_trainer, lambda trainer, final: save_sft_model(trainer, cfg, final),
                          resume=cfg.resume, config=cfg)
