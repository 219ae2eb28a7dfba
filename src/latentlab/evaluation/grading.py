"""Answer graders: numeric equality, symbolic equality through math-verify, and exact string match."""

from __future__ import annotations

import math
import re
import signal
import threading
import time
from typing import Callable

from latentlab.errors import LatentLabError

GRADER_VERSION = 2  # bump when any grader changes; it is recorded with every result

MATH_VERIFY_TIMEOUT_S = 0.5  # one deadline for parsing both answers and comparing them (main thread only)
_MAX_FRACTION_DIGITS = 1000  # longer integers in "a/b" are not parsed (int() refuses > 4300 digits anyway)

_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_FRACTION = re.compile(r"([+-]?\d+)/(\d+)")


def parse_number(text: str | None) -> float | None:
    """A number from an answer string, ignoring commas, "$", "%", spaces and a trailing period; None if not one."""
    if text is None:
        return None
    text = text.replace(",", "").replace("$", "").replace("%", "").replace("\u2212", "-").strip()
    text = text.removesuffix(".").strip()
    if _DECIMAL.fullmatch(text):
        value = float(text)
        return value if math.isfinite(value) else None
    fraction = _FRACTION.fullmatch(text) if len(text) <= 2 * _MAX_FRACTION_DIGITS + 2 else None
    if fraction and int(fraction.group(2)) != 0:
        try:
            return int(fraction.group(1)) / int(fraction.group(2))
        except OverflowError:  # beyond the float range
            return None
    return None


def numbers_equal(pred: str | None, ref: str) -> bool:
    """True when both parse as numbers that agree to a relative 1e-6 ("18" == "18.00" == "$18")."""
    a, b = parse_number(pred), parse_number(ref)
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def _as_latex(answer: str) -> str:
    """Wrap a bare answer in $...$ so math-verify's LaTeX extractor reads it whole."""
    answer = answer.strip()
    return answer if "\\boxed" in answer else f"${answer.strip('$')}$"


class _GradingTimeout(BaseException):
    """Raised at the deadline; a BaseException so that no `except Exception` inside sympy swallows it."""


class _Deadline:
    """SIGALRM handler that raises while armed. The alarm repeats every 50 ms after the deadline, because
    an exception raised inside a garbage-collector callback or `__del__` is discarded by Python."""

    def __init__(self) -> None:
        self.armed = True

    def __call__(self, signum, frame) -> None:
        if self.armed:
            raise _GradingTimeout


def math_verify_equal(pred: str | None, ref: str) -> bool:
    """Symbolic equality by math-verify ("\\frac{1}{2}" == "0.5"); False on garbage or timeout, never raises.

    Parsing and comparing together get MATH_VERIFY_TIMEOUT_S seconds (a SIGALRM interval timer, so
    only in the main thread; elsewhere there is no deadline). Nothing is evaluated as Python code:
    math-verify parses LaTeX/expressions into sympy objects.
    """
    if pred is None or not pred.strip() or ref is None:
        return False
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig(), ExprExtractionConfig()]

    def compare() -> bool:  # math-verify's own alarms (whole seconds) are off; ours is the deadline
        gold = parse(_as_latex(ref), extraction_config=config, parsing_timeout=None)
        target = parse(_as_latex(pred), extraction_config=config, parsing_timeout=None)
        return bool(gold and target and verify(gold, target, timeout_seconds=None))

    if threading.current_thread() is not threading.main_thread():
        try:
            return compare()
        except Exception:
            return False
    deadline = _Deadline()
    previous = signal.signal(signal.SIGALRM, deadline)
    start = time.monotonic()
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, MATH_VERIFY_TIMEOUT_S, 0.05)
    try:
        try:
            return compare()
        finally:
            deadline.armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    except (Exception, _GradingTimeout):
        return False
    finally:
        deadline.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        if outer_delay > 0:  # someone else's timer was running: give it back what is left
            signal.setitimer(signal.ITIMER_REAL, max(outer_delay - (time.monotonic() - start), 1e-3), outer_interval)


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
