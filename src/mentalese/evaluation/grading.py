"""Answer graders: numeric equality, symbolic equality through math-verify, Hendrycks MATH string equivalence,
and exact string match."""

from __future__ import annotations

import functools
import math
import re
import signal
import threading
import time
from typing import Callable

from mentalese.errors import MentaleseError
from mentalese.evaluation.code_grading import code_passes
from mentalese.evaluation.hendrycks_equiv import hendrycks_is_equiv

GRADER_VERSION = 3  # bump when any grader changes; it is recorded with every result

MATH_VERIFY_TIMEOUT_S = 0.5  # one deadline for parsing both answers and comparing them (main thread only)
_MAX_FRACTION_DIGITS = 1000  # longer integers in "a/b" are not parsed (int() refuses > 4300 digits anyway)

_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_FRACTION = re.compile(r"([+-]?\d+)/(\d+)")
_SPACED_THOUSANDS = re.compile(r"([+-]?\d{1,3}(?:(?: |\u00a0|\u2009|\u202f|\\,|\\ )\d{3})+)((?:[.,]\d+)?)")
_DECIMAL_COMMA = re.compile(r"([+-]?\d{4,}),(\d+)")  # four digits before the comma: not a thousands group
_GROUP_SPACE = re.compile(r" |\u00a0|\u2009|\u202f|\\,|\\ ")


def plain_number_text(text: str) -> str:
    """Spaced thousands and a European decimal comma made plain ("1 000" -> "1000", "1 000,5" and "1000,5" ->
    "1000.5"); any other text comes back unchanged, so "2,6" stays a list and "15,600" a comma-grouped number."""
    text = text.strip()
    if spaced := _SPACED_THOUSANDS.fullmatch(text):
        return _GROUP_SPACE.sub("", spaced.group(1)) + spaced.group(2).replace(",", ".")
    if comma := _DECIMAL_COMMA.fullmatch(text):
        return f"{comma.group(1)}.{comma.group(2)}"
    return text


def parse_number(text: str | None) -> float | None:
    """A number from an answer string, ignoring thousands separators (commas, spaces), "$", "%" and a trailing
    period, and reading a European decimal comma ("1000,99"); None if not one."""
    if text is None:
        return None
    text = text.replace("$", "").replace("%", "").replace("\u2212", "-").strip()
    text = plain_number_text(text.removesuffix(".")).replace(",", "")
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


# A full answer has math delimiters ($...$ not escaped, \( \), \[ \], \boxed), a "$" inside (a currency sign in a
# sentence) or prose (two words outside \text{}); anything else is a bare answer.
_MATH_DELIMITERS = re.compile(r"(?<!\\)\$.*?(?<!\\)\$|\\\(|\\\[|\\boxed|\\fbox", re.DOTALL)
_DOLLAR = re.compile(r"(?<!\\)\$")
_TEXT_GROUP = re.compile(r"\\(?:text\w*|mbox|mathrm|operatorname)\s*\{[^{}]*\}")
_PROSE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}[\s,.:;!?]+[A-Za-z]{2,}")


def math_verify_input(answer: str) -> str:
    """The text math-verify parses. A full answer goes as it is, and math-verify finds the math in it the way
    it reads a model's whole output; a bare answer (a \\boxed{} content, a MATH reference) is wrapped in $...$
    so that its LaTeX is read whole, after spaced thousands and a European decimal comma are made plain."""
    answer = answer.strip()
    inner = answer.strip("$")  # "$18" and "18$" are bare: a currency sign
    if _MATH_DELIMITERS.search(answer) or _DOLLAR.search(inner) or _PROSE.search(_TEXT_GROUP.sub(" ", answer)):
        return answer
    return f"${plain_number_text(inner)}$"


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


@functools.cache
def load_math_verify() -> tuple[Callable, Callable, list]:
    """math-verify's parse, verify and extraction config, imported and warmed up once, outside any deadline
    (the imports take about 0.5 s and the first parse builds the LaTeX parser). Call it before timing grades."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig(), ExprExtractionConfig()]
    verify(parse("$1$", config, parsing_timeout=None), parse("1", config, parsing_timeout=None), timeout_seconds=None)
    return parse, verify, config


def math_verify_equal(pred: str | None, ref: str) -> bool:
    """Symbolic equality by math-verify ("\\frac{1}{2}" == "0.5"); False on garbage or timeout, never raises.

    A full answer ("Therefore $x \\geq 5$ is the solution.") is parsed the way math-verify parses a model's
    output, a bare one as LaTeX (see math_verify_input). Parsing both and comparing get one budget of
    MATH_VERIFY_TIMEOUT_S seconds (a SIGALRM interval timer, so only in the main thread; elsewhere there is
    no deadline); the one-time import (load_math_verify) comes before it. Identical inputs are equal without
    parsing. Nothing is evaluated as Python code: math-verify parses LaTeX/expressions into sympy objects.
    """
    if pred is None or not pred.strip() or ref is None:
        return False
    gold_text, target_text = math_verify_input(ref), math_verify_input(pred)
    if " ".join(gold_text.split()) == " ".join(target_text.split()):
        return True
    parse, verify, config = load_math_verify()

    def compare() -> bool:  # math-verify's own alarms (whole seconds) are off; ours is the deadline
        gold = parse(gold_text, extraction_config=config, parsing_timeout=None)
        target = parse(target_text, extraction_config=config, parsing_timeout=None)
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
    "math_hendrycks": hendrycks_is_equiv,  # MATH's own is_equiv: normalised strings, ordered tuples are not sets
    "code": code_passes,  # code benchmarks: run the extracted code against the tests in the sandbox
}


def grade(pred: str | None, ref: str, grader: str) -> bool:
    """Grade a prediction against a reference with a named grader."""
    if grader not in GRADERS:
        raise MentaleseError(f"unknown grader {grader!r}; known: {', '.join(GRADERS)}")
    return GRADERS[grader](pred, ref)
