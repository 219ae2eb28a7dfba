"""How examples become training text, shared by every method so their outputs grade alike.

    prompt  = spec.prompt.format(question=...)            e.g. "a=7;b=a+5;b?\\n"
    CoT     = prompt + "a=7 b=7+5=2" + "\\n" + "The answer is: 2" + eos
    No-CoT  = prompt + "The answer is: 2" + eos

Loss is on the target (everything after the prompt) only.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from mentalese.errors import MentaleseError
from mentalese.tasks.example import Example
from mentalese.tasks.registry import render_prompt

ANSWER_PROMPT = "The answer is:"
IGNORE_INDEX = -100


def answer_text(example: Example, answer_prompt: str = ANSWER_PROMPT) -> str:
    return f"{answer_prompt} {example.answer}"


def target_text(example: Example, cot: bool, answer_prompt: str = ANSWER_PROMPT, step_sep: str = " ") -> str:
    if not cot:
        return answer_text(example, answer_prompt)
    if not example.cot_steps:
        raise MentaleseError(f"example {example.id!r} has no CoT steps but cot=True")
    return f"{example.cot_text(step_sep)}\n{answer_text(example, answer_prompt)}"


@dataclass
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]


def tokenize_sft_example(
    example: Example,
    tokenizer: PreTrainedTokenizerBase,
    prompt_template: str,
    cot: bool,
    answer_prompt: str = ANSWER_PROMPT,
) -> TokenizedExample:
    """prompt ids (label -100) + target ids + eos (labelled)."""
    if tokenizer.eos_token_id is None:
        raise MentaleseError("tokenizer has no eos token; SFT targets end with eos")
    prompt_ids = tokenizer(render_prompt(prompt_template, example.question))["input_ids"]
    target_ids = tokenizer(target_text(example, cot, answer_prompt), add_special_tokens=False)["input_ids"]
    target_ids = target_ids + [tokenizer.eos_token_id]
    return TokenizedExample(prompt_ids + target_ids, [IGNORE_INDEX] * len(prompt_ids) + target_ids)
