"""Format helpers shared by the benchmark row parsers in `mentalese.tasks.benchmarks`.

Everything here is pure string work: reading fields from raw rows, normalising numeric answers,
finding the last `\\boxed{...}`, GSM8K calculator annotations, the iCoT text-line format
(`question||cot #### answer`), and the iCoT multi-digit multiplication format (digits reversed,
least significant first) together with a seeded generator that writes the same lines.

Every failure raises `MentaleseError` with a one-line message that names the benchmark, the row id
and the problem.
"""

from __future__ import annotations

import math
import random
import re
from decimal import Decimal
from typing import Any, Iterable

from mentalese.errors import MentaleseError
from mentalese.evaluation.extraction import last_boxed  # noqa: F401  (re-exported for loaders)
from mentalese.tasks.example import Example

# --------------------------------------------------------------------------------------------
# Row fields


def row_error(bench: str, row_id: str, problem: str) -> MentaleseError:
    return MentaleseError(f"{bench} row {row_id}: {problem}")


def get_field(row: Any, key: str | tuple[str, ...], bench: str, row_id: str, kind: type = str) -> Any:
    """`row[key]` (the first present key when several are given), checked to be of type `kind`."""
    if not isinstance(row, dict):
        raise row_error(bench, row_id, f"expected a JSON object, got {type(row).__name__}")
    keys = (key,) if isinstance(key, str) else key
    for k in keys:
        if row.get(k) is not None:
            value = row[k]
            if kind is str and isinstance(value, str) and not value.strip():
                raise row_error(bench, row_id, f"field {k!r} is empty")
            if kind is float:  # any number (or numeric string, checked later)
                if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                    raise row_error(bench, row_id, f"field {k!r} is not a number: {value!r}")
            elif not isinstance(value, kind):
                raise row_error(bench, row_id, f"field {k!r} should be {kind.__name__}, got {type(value).__name__}")
            return value
    names = " or ".join(repr(k) for k in keys)
    raise row_error(bench, row_id, f"missing field {names}")


def text_line(row: Any, bench: str, row_id: str) -> str:
    if not isinstance(row, str):
        raise row_error(bench, row_id, f"expected a text line, got {type(row).__name__}")
    return row.strip()


# --------------------------------------------------------------------------------------------
# Numbers

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def normalize_number(value: Any, bench: str, row_id: str) -> str:
    """A reference number as a canonical string: commas stripped, `51.0` -> `51`, sign kept.

    Floats that are not whole are written with 15 significant digits, which removes binary
    noise (`3244047.0999999996` -> `3244047.1`) without ever using exponent notation.
    """
    if isinstance(value, bool):
        raise row_error(bench, row_id, f"unparseable number {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise row_error(bench, row_id, f"unparseable number {value!r}")
        if value.is_integer():
            return str(int(value))
        return _plain(Decimal(f"{value:.15g}"))
    if not isinstance(value, str):
        raise row_error(bench, row_id, f"unparseable number {value!r}")
    text = value.strip().replace(",", "")
    if not _NUMBER.fullmatch(text):
        raise row_error(bench, row_id, f"unparseable number {value!r}")
    if "e" in text.lower():
        return _plain(Decimal(text))
    text = text.lstrip("+")
    if "." in text:
        text = text.rstrip("0").rstrip(".") or "0"
        if text.startswith(".") or text.startswith("-."):
            text = text.replace(".", "0.", 1)
    sign = "-" if text.startswith("-") else ""
    digits = text.lstrip("-")
    whole, dot, frac = digits.partition(".")
    whole = whole.lstrip("0") or "0"  # "073" -> "73" (AIME answers are zero-padded)
    result = whole + (dot + frac if frac else "")
    return "0" if result == "0" else sign + result


def _plain(d: Decimal) -> str:
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


# --------------------------------------------------------------------------------------------
# GSM8K: "... <<48/2=24>>24 ...\n#### 72"

_ANNOTATION = re.compile(r"<<.*?>>")


def split_hash_answer(text: str, bench: str, row_id: str) -> tuple[str, str]:
    """(reasoning, answer) around the last `####`."""
    if "####" not in text:
        raise row_error(bench, row_id, "no '####' before the final answer")
    body, _, answer = text.rpartition("####")
    if not answer.strip():
        raise row_error(bench, row_id, "nothing after '####'")
    return body, answer.strip()


def gsm8k_steps(body: str) -> tuple[list[str], list[str]]:
    """(natural-language lines without calculator annotations, the `<<a*b=c>>` annotations)."""
    equations = _ANNOTATION.findall(body)
    lines = [re.sub(r"  +", " ", _ANNOTATION.sub("", line)).strip() for line in body.splitlines()]
    return [line for line in lines if line], equations


def split_sentences(cot: str) -> list[str]:
    """Natural-language CoT split after each '. ' (the period stays): ' '.join gives the text back."""
    return [s for s in re.split(r"(?<=\.) +", cot.strip()) if s]


# --------------------------------------------------------------------------------------------
# iCoT text lines: "question||cot #### answer"


def split_icot_line(line: str, bench: str, row_id: str) -> tuple[str, str, str]:
    """(question, cot, answer) of one iCoT line; the cot may be empty."""
    question, sep, rest = line.partition("||")
    if not sep:
        raise row_error(bench, row_id, "no '||' between question and chain of thought")
    if not question.strip():
        raise row_error(bench, row_id, "empty question before '||'")
    cot, answer = split_hash_answer(rest, bench, row_id)
    return question.strip(), cot.strip(), answer


# --------------------------------------------------------------------------------------------
# Multiplication (iCoT): "5 6 3 2 * 7 4 3 4||5 5 5 6 1 + 0 0 6 4 9 0 ( 5 5 1 1 1 1 ) + ... #### 5 5 6 0 8 2 0 1"


def _reversed_digits(value: int, width: int) -> str:
    text = str(value)
    if value < 0 or len(text) > width:
        raise MentaleseError(f"{value} does not fit in {width} digits")
    return " ".join(text.zfill(width)[::-1])


def format_multiplication_line(a: int, b: int) -> str:
    """One line in the iCoT multiplication format (digits reversed, least significant first).

    Partial product i is `a * (digit i of b) * 10**i`, written reversed and zero-padded to
    len(a)+1+i digits; from the second partial product on (except the last) the running sum
    follows in parentheses at the same width; the product is padded to len(a)+len(b) digits.
    """
    if a <= 0 or b <= 0:
        raise MentaleseError(f"multiplication operands must be positive, got {a} and {b}")
    la, lb = len(str(a)), len(str(b))
    parts, running = [], 0
    for i, digit in enumerate(int(d) for d in reversed(str(b))):
        partial = a * digit * 10**i
        running += partial
        width = la + 1 + i
        part = _reversed_digits(partial, width)
        if 1 <= i < lb - 1:
            part += f" ( {_reversed_digits(running, width)} )"
        parts.append(part)
    question = f"{_reversed_digits(a, la)} * {_reversed_digits(b, lb)}"
    return f"{question}||{' + '.join(parts)} #### {_reversed_digits(a * b, la + lb)}"


def _read_reversed(text: str, what: str, bench: str, row_id: str) -> int:
    digits = text.split()
    if not digits or not all(len(d) == 1 and d.isdigit() for d in digits):
        raise row_error(bench, row_id, f"{what} is not a space-separated digit string: {text!r}")
    return int("".join(reversed(digits)))


def parse_multiplication_line(line: str, bench: str, row_id: str) -> Example:
    question, cot, answer = split_icot_line(line, bench, row_id)
    left, star, right = question.partition(" * ")
    if not star:
        raise row_error(bench, row_id, "question is not of the form 'a * b'")
    a = _read_reversed(left, "first operand", bench, row_id)
    b = _read_reversed(right, "second operand", bench, row_id)
    _read_reversed(answer, "answer", bench, row_id)
    steps = [s.strip() for s in cot.split(" + ")] if cot else []
    return Example(
        question=question,
        answer=" ".join(answer.split()),
        cot_steps=steps,
        id=row_id,
        meta={"a": a, "b": b},
    )


def generate_multiplication(
    n_digits: int,
    num_examples: int = 10000,
    seed: int = 0,
    exclude_questions: Iterable[str] = (),
    split: str = "train",
) -> list[Example]:
    """`num_examples` distinct n_digits x n_digits problems in the iCoT format, deterministic per seed.

    Operands are uniform over n_digits-digit numbers (no leading zero), as in the released files.
    Questions in `exclude_questions` (e.g. the valid/test questions) are never produced.
    """
    if not 1 <= n_digits <= 40:
        raise MentaleseError(f"n_digits must be in 1..40, got {n_digits}")
    if num_examples < 1:
        raise MentaleseError(f"num_examples must be >= 1, got {num_examples}")
    low, high = 10 ** (n_digits - 1), 10**n_digits - 1
    if num_examples > (high - low + 1) ** 2 // 2:
        raise MentaleseError(f"{num_examples} distinct {n_digits}x{n_digits} problems do not exist")
    rng = random.Random(seed * 1_000_003 + n_digits)
    seen = set(exclude_questions)
    examples: list[Example] = []
    while len(examples) < num_examples:
        line = format_multiplication_line(rng.randint(low, high), rng.randint(low, high))
        question = line.partition("||")[0]
        if question in seen:
            continue
        seen.add(question)
        examples.append(parse_multiplication_line(line, f"mult-{n_digits}x{n_digits}", f"{split}-{len(examples)}"))
    return examples
