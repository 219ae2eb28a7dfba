"""Answer graders: numeric equality, symbolic equality through math-verify, and exact string match."""

from __future__ import annotations

import math
import re
import threading
from typing import Callable

from latentlab.errors import LatentLabError

GRADER_VERSION = 1  # bump when any grader changes; it is recorded with every result

MATH_VERIFY_TIMEOUT_S = 5  # per parse and per comparison; needs the main thread (signal.alarm)

_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_FRACTION = re.compile(r"([+-]?\d+)/(\d+)")


def parse_number(text: str | None) -> float | None:
    """A number from an answer string, ignoring commas, "$", "%", spaces and a trailing period; None if not one."""
    if text is None:
        return None
    text = text.replace(",", "").replace("$", "").replace("%", "").replace("\u2212", "-").strip()
    text = text.removesuffix(".").strip()
    if _DECIMAL.fullmatch(text):
        return float(text)
    fraction = _FRACTION.fullmatch(text)
    if fraction and int(fraction.group(2)) != 0:
        return int(fraction.group(1)) / int(fraction.group(2))
    return None


def numbers_equal(pred: str | None, ref: str) -> bool:
    """True when both parse as numbers that agree to a relative 1e-6 ("18" == "18.00" == "$18")."""
    a, b = parse_number(pred), parse_number(ref)
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def _as_latex(answer: str) -> str:
    """Wrap a bare answer in $...$ so math-verify's LaTeX extractor reads it whole."""
    answer = answer.strip()
    return answer if "\\boxed" in answer else f"${answer.strip('$')}$"


def math_verify_equal(pred: str | None, ref: str) -> bool:
    """Symbolic equality by math-verify ("\\frac{1}{2}" == "0.5"); False on garbage, never raises."""
    if pred is None or not pred.strip() or ref is None:
        return False
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    from math_verify.errors import TimeoutException

    # math-verify times out with signal.alarm, which only works in the main thread.
    timeout = MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    config = [LatexExtractionConfig(), ExprExtractionConfig()]
    try:
        gold = parse(_as_latex(ref), extraction_config=config, parsing_timeout=timeout)
        target = parse(_as_latex(pred), extraction_config=config, parsing_timeout=timeout)
        return bool(gold and target and verify(gold, target, timeout_seconds=timeout))
    except (Exception, TimeoutException):
        return False


def exact_equal(pred: str | None, ref: str) -> bool:
    """Case-sensitive string equality after collapsing whitespace and dropping a trailing period."""
    if pred is None or ref is None:
        return False

    def norm(s: str) -> str:
        return " ".join(s.split()).removesuffix(".").rstrip()

    return norm(pred) == norm(ref)


GRADERS: dict[str, Callable[[str | None, str], bool]] = {
    "numeric": numbers_equal,
    "math_verify": math_verify_equal,
    "exact": exact_equal,
}


def grade(pred: str | None, ref: str, grader: str) -> bool:
    """Grade a prediction against a reference with a named grader."""
    if grader not in GRADERS:
        raise LatentLabError(f"unknown grader {grader!r}; known: {', '.join(GRADERS)}")
    return GRADERS[grader](pred, ref)
