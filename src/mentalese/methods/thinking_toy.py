"""A toy reasoning model that thinks inside `<think> ... </think>`, for soft thinking at toy scale.

The chain task, written the way reasoning models (R1, QwQ, Qwen3) write:

    prompt  = "7+5*3-4\\n<think>"                       (the template opens thinking, as R1's does)
    target  = "7+5=2 2*3=6 6-4=2</think>\\nThe answer is: 2" + eos

`<think>`/`</think>` are added as special tokens; loss is on the target only. Training reuses
`SFTConfig`, the model preparation and final save of `methods/sft.py` and its resume rules
(`methods/checkpoints.py`); only the text format differs.
"""

from __future__ import annotations

from pathlib import Path

from transformers import DataCollatorForSeq2Seq, Trainer

from mentalese.errors import MentaleseError
from mentalese.methods.checkpoints import train_resuming
from mentalese.methods.formatting import IGNORE_INDEX, answer_text
from mentalese.methods.sft import SFTConfig, prepare_model, save_sft_model
from mentalese.tasks.example import Example
from mentalese.tasks.registry import get_benchmark, load_benchmark, render_prompt

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
THINK_PROMPT = "{question}\n" + THINK_OPEN


def thinking_target(example: Example, answer_prompt: str) -> str:
    if not example.cot_steps:
        raise MentaleseError(f"example {example.id!r} has no CoT steps to think with")
    return f"{example.cot_text(' ')}{THINK_CLOSE}\n{answer_text(example, answer_prompt)}"


def tokenize_thinking_example(example: Example, tokenizer, answer_prompt: str) -> dict[str, list[int]]:
    prompt_ids = tokenizer(render_prompt(THINK_PROMPT, example.question))["input_ids"]
    target_ids = tokenizer(thinking_target(example, answer_prompt), add_special_tokens=False)["input_ids"]
    target_ids = target_ids + [tokenizer.eos_token_id]
    return {"input_ids": prompt_ids + target_ids, "attention_mask": [1] * (len(prompt_ids) + len(target_ids)),
            "labels": [IGNORE_INDEX] * len(prompt_ids) + target_ids}


def train_thinking_model(cfg: SFTConfig) -> Path:
    """Train the toy thinking model on cfg.task (or continue, or leave a finished run as it is); save it (HF
    format) to output_dir/model. Resume, files and distributed launch as `train_sft`."""
    from datasets import Dataset

    get_benchmark(cfg.task)  # a typo writes nothing

    def build_trainer():
        with cfg.main_process_first(local=cfg.save_on_each_node, desc="building the model"):  # tiny-*: once
            model, tokenizer = prepare_model(cfg, special_tokens=[THINK_OPEN, THINK_CLOSE])
        examples = load_benchmark(cfg.task, cfg.train_split, data_dir=cfg.data_dir, limit=cfg.train_limit,
                                  **cfg.task_options)
        rows = [tokenize_thinking_example(ex, tokenizer, cfg.answer_prompt) for ex in examples]
        rows = [r for r in rows if len(r["input_ids"]) <= cfg.max_length]
        if not rows:
            raise MentaleseError(f"no training examples of at most {cfg.max_length} tokens in {cfg.task}")
        tokenizer.padding_side = "right"
        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)
        trainer = Trainer(model=model, args=cfg, train_dataset=Dataset.from_list(rows), data_collator=collator,
                          processing_class=tokenizer)
        return trainer, {"train_examples": len(rows)}

    return train_resuming(cfg, build_trainer, lambda trainer, final: save_sft_model(trainer, cfg, final),
                          resume=cfg.resume, config=cfg)
