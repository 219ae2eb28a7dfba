"""A toy reasoning model that thinks inside `<think> ... </think>`, for soft thinking at toy scale.

The chain task, written the way reasoning models (R1, QwQ, Qwen3) write:

    prompt  = "7+5*3-4\\n<think>"                       (the template opens thinking, as R1's does)
    target  = "7+5=2 2*3=6 6-4=2</think>\\nThe answer is: 2" + eos

`<think>`/`</think>` are added as special tokens; loss is on the target only. Training reuses
`SFTConfig` and the model preparation of `methods/sft.py`; only the text format differs.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import DataCollatorForSeq2Seq, Trainer
from transformers.trainer_utils import get_last_checkpoint

from latentlab.config import save_config
from latentlab.errors import LatentLabError
from latentlab.methods.formatting import IGNORE_INDEX, answer_text
from latentlab.methods.sft import SFTConfig, prepare_model
from latentlab.tasks.example import Example
from latentlab.tasks.registry import load_benchmark, render_prompt
from latentlab.atomic_files import write_text_atomic

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
THINK_PROMPT = "{question}\n" + THINK_OPEN


def thinking_target(example: Example, answer_prompt: str) -> str:
    if not example.cot_steps:
        raise LatentLabError(f"example {example.id!r} has no CoT steps to think with")
    return f"{example.cot_text(' ')}{THINK_CLOSE}\n{answer_text(example, answer_prompt)}"


def tokenize_thinking_example(example: Example, tokenizer, answer_prompt: str) -> dict[str, list[int]]:
    prompt_ids = tokenizer(render_prompt(THINK_PROMPT, example.question))["input_ids"]
    target_ids = tokenizer(thinking_target(example, answer_prompt), add_special_tokens=False)["input_ids"]
    target_ids = target_ids + [tokenizer.eos_token_id]
    return {"input_ids": prompt_ids + target_ids, "attention_mask": [1] * (len(prompt_ids) + len(target_ids)),
            "labels": [IGNORE_INDEX] * len(prompt_ids) + target_ids}


def train_thinking_model(cfg: SFTConfig) -> Path:
    """Train the toy thinking model on cfg.task; save it (HF format) to output_dir/model."""
    from datasets import Dataset

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    model, tokenizer = prepare_model(cfg, special_tokens=[THINK_OPEN, THINK_CLOSE])
    examples = load_benchmark(cfg.task, cfg.train_split, data_dir=cfg.data_dir, limit=cfg.train_limit,
                              **cfg.task_options)
    rows = [tokenize_thinking_example(ex, tokenizer, cfg.answer_prompt) for ex in examples]
    rows = [r for r in rows if len(r["input_ids"]) <= cfg.max_length]
    if not rows:
        raise LatentLabError(f"no training examples of at most {cfg.max_length} tokens in {cfg.task}")
    tokenizer.padding_side = "right"
    trainer = Trainer(model=model, args=cfg, train_dataset=Dataset.from_list(rows),
                      data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX),
                      processing_class=tokenizer)
    last = get_last_checkpoint(str(out)) if cfg.resume else None
    result = trainer.train(resume_from_checkpoint=last)
    final = out / "model"
    trainer.save_model(str(final))
    tokenizer.save_pretrained(str(final))
    trainer.state.save_to_json(str(out / "trainer_state.json"))
    write_text_atomic(out / "train_metrics.json", json.dumps({**result.metrics, "train_examples": len(rows)}, indent=2))
    return final
