"""Aggregate metrics: unbiased pass@k, majority vote over sampled answers, latency summaries."""

from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Sequence

from mentalese.errors import MentaleseError
from mentalese.evaluation.grading import parse_number


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k = 1 - C(n-c, k) / C(n, k) from n samples with c correct, in the Codex paper's stable product form."""
    if not 0 <= c <= n:
        raise MentaleseError(f"pass@k needs 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise MentaleseError(f"pass@k needs 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(correct_counts: Sequence[int], n: int, k: int) -> float:
    """Mean pass@k over problems, each with n samples and correct_counts[i] of them correct."""
    if not correct_counts:
        raise MentaleseError("mean_pass_at_k needs at least one problem")
    return sum(pass_at_k(n, c, k) for c in correct_counts) / len(correct_counts)


def normalise_number(answer: str) -> str:
    """A canonical form for numeric answers ("18.0", "18", "$18" -> "18"); non-numbers come back stripped."""
    value = parse_number(answer)
    if value is None:
        return answer.strip()
    if value.is_integer():
        return str(int(value))
    return format(value, ".12g")


def majority_vote(answers: Sequence[str | None], normalise: Callable[[str], str] | None = None) -> str | None:
    """The most common non-None answer (first seen wins a tie), as first written; None if there is none.

    With normalise (e.g. normalise_number) answers vote by their normalised form, so "18" and "18.0" agree.
    """
    keyed = [(normalise(a) if normalise else a, a) for a in answers if a is not None]
    if not keyed:
        return None
    counts = Counter(key for key, _ in keyed)
    best = max(counts.values())
    return next(answer for key, answer in keyed if counts[key] == best)


def _quantile(ordered: list[float], q: float) -> float:
    """Linear-interpolated quantile of sorted values (numpy's default method)."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise_latencies(seconds: Sequence[float]) -> dict[str, float]:
    """Count, mean, median, p90 and max of per-example latencies in seconds."""
    if not seconds:
        raise MentaleseError("summarise_latencies needs at least one latency")
    if any(s < 0 or math.isnan(s) for s in seconds):
        raise MentaleseError("latencies must be non-negative numbers of seconds")
    ordered = sorted(float(s) for s in seconds)
    return {
        "count": len(ordered),
        "mean": sum(ordered) / len(ordered),
        "median": _quantile(ordered, 0.5),
        "p90": _quantile(ordered, 0.9),
        "max": ordered[-1],
    }
