"""Answer extraction from generated text: strict (a marked answer) and flexible (fall back to the last number)."""

from __future__ import annotations

import re
from typing import Callable

from mentalese.errors import MentaleseError
from mentalese.evaluation.code_extraction import extract_code, extract_code_flexible

EXTRACTION_VERSION = 1  # bump when any extractor changes; it is recorded with every result

_ANSWER_IS = re.compile(r"the answer is\s*:?[ \t]*(.*)", re.IGNORECASE)
_HASH = re.compile(r"####[ \t]*(.*)")
_BOX_COMMANDS = ("\\boxed", "\\fbox")
# A minus counts only when it does not follow a word or ")" ("5-3" ends in 3, not -3);
# thousands groups must be whole ("1,234" is one number, "1,2,3" is three).
_NUMBER = re.compile(r"(?:(?<![\w)])-)?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")


def _clean(answer: str) -> str | None:
    """Strip spaces and one trailing period; an empty answer counts as none."""
    answer = answer.strip()
    if answer.endswith("."):
        answer = answer[:-1].rstrip()
    return answer or None


def extract_answer_is(text: str) -> str | None:
    """The rest of the line after the first "The answer is" (any case, optional colon)."""
    match = _ANSWER_IS.search(text)
    return _clean(match.group(1)) if match else None


def extract_hash(text: str) -> str | None:
    """The rest of the line after the first "####" (GSM8K style)."""
    match = _HASH.search(text)
    return _clean(match.group(1)) if match else None


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`) in `text`, braces matched; None if absent.

    Escaped braces (`\\{`, `\\}`) do not count. The brace-less form `\\boxed 9$` gives `9`.
    An unbalanced last box gives None.
    """
    end = len(text)  # the text before a rejected command is searched again, as if cut there
    while True:  # the last box command not followed by a letter (\boxedfoo is not one)
        start = max(text.rfind(cmd, 0, end) for cmd in _BOX_COMMANDS)
        if start < 0:
            return None
        cmd = next(c for c in _BOX_COMMANDS if text.startswith(c, start))
        i = start + len(cmd)
        if i >= end or not text[i].isalpha():
            break
        end = start
    while i < end and text[i] == " ":
        i += 1
    if i >= end:
        return None
    if text[i] != "{":
        content = re.split(r"[$\n]", text[i:end], maxsplit=1)[0].strip()
        return content or None
    depth, j = 0, i
    while j < end:
        ch = text[j]
        if ch == "\\":
            j += 2  # skip the escaped character (\{, \}, \\)
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
        j += 1
    return None


def extract_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} or \\fbox{...}, stripped; None if absent, empty or unclosed."""
    content = last_boxed(text)
    return content.strip() or None if content is not None else None


def extract_last_number(text: str) -> str | None:
    """The last number in the text, thousands commas removed ("1,234.5" -> "1234.5")."""
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


def extract_text(text: str) -> str | None:
    """The first non-blank line, stripped (for exact-match answers)."""
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else None


STRICT_EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "answer_is": extract_answer_is,
    "hash": extract_hash,
    "boxed": extract_boxed,
    "text": extract_text,
    "code": extract_code,  # code benchmarks: the last ```python block, else the completion
}
FLEXIBLE_EXTRACTORS: dict[str, Callable[[str], str | None]] = {  # methods whose flexible mode is their own
    "code": extract_code_flexible,
}
EXTRACTION_MODES = ("strict", "flexible")


def extract(text: str, method: str, mode: str = "strict") -> str | None:
    """Extract an answer with a named method; "flexible" mode falls back to the last number in the text.

    Flexible keeps the strict answer when it contains a digit, else uses the last number (same as strict for "text").
    """
    if method not in STRICT_EXTRACTORS:
        raise MentaleseError(f"unknown extraction method {method!r}; known: {', '.join(STRICT_EXTRACTORS)}")
    if mode not in EXTRACTION_MODES:
        raise MentaleseError(f"unknown extraction mode {mode!r}; known: {', '.join(EXTRACTION_MODES)}")
    if mode == "flexible" and method in FLEXIBLE_EXTRACTORS:
        return FLEXIBLE_EXTRACTORS[method](text)
    answer = STRICT_EXTRACTORS[method](text)
    if mode == "strict" or method == "text":
        return answer
    if answer is not None and any(char.isdigit() for char in answer):
        return answer
    return extract_last_number(text)
