"""Code extraction from generated text (the `code` extraction method).

strict    the last ```python block (the soft-thinking papers' extractor: `re.findall(r"```python\\n(.*?)```")[-1]`),
          else the completion itself, HumanEval style: the text after the last `</think>`, cut at the first
          of the Codex paper's stop sequences (\\nclass, \\ndef, \\n#, \\nif, \\nprint). The grader puts the
          benchmark's prefix (HumanEval: the prompt) before it, so a function body completes the prompt and a
          whole function redefines it.
flexible  also fences tagged ```py / ```python3 / untagged ones, and a last block left open (a generation
          cut at max_new_tokens); else the same completion.

Where the official code differs: with no ```python block it grades an empty program (a fail); strict
falls back to the completion so that base models prompted completion-style can be graded at all.
Nothing here runs code.
"""

from __future__ import annotations

import re

CODE_EXTRACTION_VERSION = 1  # recorded in the code benchmarks' spec versions; bump with any change here

THINK_CLOSE = "</think>"
STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")  # Chen et al. 2021, HumanEval completions
_PYTHON_FENCE = re.compile(r"```python\n(.*?)```", re.DOTALL)
_ANY_FENCE = re.compile(r"```[ \t]*(?:python3|python|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def completion_code(text: str) -> str | None:
    """The answer part of a completion (after the last </think>, leading blank lines dropped, indentation
    kept), cut at the first stop sequence."""
    if THINK_CLOSE in text:
        text = text.rsplit(THINK_CLOSE, 1)[1]
    text = text.lstrip("\r\n")
    cut = min((i for i in (text.find(s) for s in STOP_SEQUENCES) if i >= 0), default=len(text))
    code = text[:cut].rstrip()
    return code if code.strip() else None


def extract_code(text: str) -> str | None:
    """Strict: the last ```python block, else the completion (see the module docstring)."""
    blocks = _PYTHON_FENCE.findall(text)
    if blocks:
        return blocks[-1] if blocks[-1].strip() else None
    return completion_code(text)


def extract_code_flexible(text: str) -> str | None:
    """Flexible: the last fenced block of any Python tag or none, closed or left open; else the completion."""
    blocks = _ANY_FENCE.findall(text)
    if blocks:
        filled = [b for b in blocks if b.strip()]
        return filled[-1] if filled else None
    return completion_code(text)
