"""CODI's efficiency measure that the demo table and `mentalese bench codi-decode` share.

Compression = mean CoT tokens written by CoT-SFT / (n + 2) (n thoughts plus <bot> and <eot>, as in
the paper); `cot_token_count` counts the numerator's tokens of one output. The benchmarks
themselves are `mentalese bench codi-decode` and `mentalese bench codi-train-step`.
"""

from __future__ import annotations

from mentalese.methods.formatting import ANSWER_PROMPT


def cot_token_count(text: str, tokenizer, answer_prompt: str = ANSWER_PROMPT) -> int:
    """Tokens a CoT-SFT output spends before its answer prompt."""
    cot = text.split(answer_prompt)[0]
    return len(tokenizer(cot, add_special_tokens=False)["input_ids"])
