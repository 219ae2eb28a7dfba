"""Answer extraction, graders and metrics, checked against hand-worked cases."""

import itertools
import math
import threading

import pytest

from mentalese.errors import MentaleseError
from mentalese.evaluation import (
    exact_equal,
    extract,
    extract_answer_is,
    extract_boxed,
    extract_hash,
    extract_last_number,
    extract_text,
    grade,
    majority_vote,
    math_verify_equal,
    mean_pass_at_k,
    normalise_number,
    numbers_equal,
    pass_at_k,
    summarise_latencies,
)

# --- extraction ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so 3 + 4 = 7. The answer is: 7.\nmore", "7"),
        ("THE ANSWER IS 42", "42"),
        ("the answer is:12 apples", "12 apples"),
        ("The answer is 1. Then the answer is 2", "1. Then the answer is 2"),
        ("no marker here 5", None),
        ("The answer is:   \n", None),
    ],
)
def test_extract_answer_is(text, expected):
    assert extract_answer_is(text) == expected


def test_extract_hash():
    assert extract_hash("so 12 apples. #### 18") == "18"
    assert extract_hash("#### 1,234.\n#### 5") == "1,234"
    assert extract_hash("no hash 18") is None


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"\boxed{1} then \boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"so \fbox{ 7 }.", "7"),
        (r"\boxed {x^{2}}", "x^{2}"),
        (r"\boxed{3} and \boxed{\frac{1}{2", None),  # last one is never closed
        ("nothing boxed", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("I have 3 apples and 1,234 pears", "1234"),
        ("it is -5 degrees", "-5"),
        ("5-3 = 2.5", "2.5"),
        ("10 - 7 leaves 3.", "3"),
        ("1,2,3", "3"),
        ("12,345,678.90 dollars", "12345678.90"),
        ("abc123", "123"),
        ("no digits", None),
    ],
)
def test_extract_last_number(text, expected):
    assert extract_last_number(text) == expected


def test_extract_text():
    assert extract_text("\n  Tom is a wumpus. \nreasoning") == "Tom is a wumpus."
    assert extract_text("   \n ") is None


@pytest.mark.parametrize(
    "text, method, strict, flexible",
    [
        ("so 12 apples. #### 18", "hash", "18", "18"),
        ("so 12 apples, 18 in all", "hash", None, "18"),
        ("so 12 apples. #### eighteen", "hash", "eighteen", "12"),
        ("The answer is: 18 apples", "answer_is", "18 apples", "18 apples"),
        ("we get 4, so the answer is four", "answer_is", "four", "4"),
        (r"\boxed{x} since y = 3", "boxed", "x", "3"),
        (r"\boxed{\frac{1}{2}} or 7", "boxed", r"\frac{1}{2}", r"\frac{1}{2}"),
        ("yes\n12", "text", "yes", "yes"),
        ("nothing", "answer_is", None, None),
    ],
)
def test_extract_strict_vs_flexible(text, method, strict, flexible):
    assert extract(text, method, "strict") == strict
    assert extract(text, method, "flexible") == flexible


def test_extract_rejects_unknown_method_and_mode():
    with pytest.raises(MentaleseError, match="'regex'.*answer_is, hash, boxed, text"):
        extract("x", "regex", "strict")
    with pytest.raises(MentaleseError, match="'loose'"):
        extract("x", "hash", "loose")


# --- graders ------------------------------------------------------------------


@pytest.mark.parametrize(
    "pred, ref, expected",
    [
        ("18", "18.0", True),
        ("18.00", "18", True),
        ("$1,234.", "1234", True),
        ("50%", "50", True),
        ("3/4", "0.75", True),
        ("-2", "\u22122", True),
        ("0.1", "0.1000000001", True),
        ("18", "19", False),
        ("18.01", "18", False),
        ("1/0", "1", False),
        ("eighteen", "18", False),
        ("inf", "inf", False),
        ("1_000", "1000", False),
        ("", "0", False),
        (None, "18", False),
    ],
)
def test_numbers_equal(pred, ref, expected):
    assert numbers_equal(pred, ref) is expected


@pytest.mark.parametrize(
    "pred, ref, expected",
    [
        ("0.5", r"\frac{1}{2}", True),
        (r"(3, \frac{\pi}{2})", r"\left( 3, \frac{\pi}{2} \right)", True),
        ("1+x^2", "x^2+1", True),
        (r"\boxed{18}", "18.0", True),
        ("3", "2", False),
        (None, "2", False),
        ("", "2", False),
        (r"}{ \frac garbage \left(", "2", False),
    ],
)
def test_math_verify_equal(pred, ref, expected):
    assert math_verify_equal(pred, ref) is expected


def test_math_verify_equal_works_off_the_main_thread():
    results = []
    worker = threading.Thread(target=lambda: results.append(math_verify_equal("0.5", r"\frac{1}{2}")))
    worker.start()
    worker.join(timeout=30)
    assert results == [True]


def test_exact_equal():
    assert exact_equal("Tom  is\na wumpus.", "Tom is a wumpus")
    assert not exact_equal("tom is a wumpus", "Tom is a wumpus")
    assert not exact_equal(None, "Tom")


def test_grade_dispatches_and_rejects_unknown_grader():
    assert grade("18.0", "18", "numeric")
    assert grade("Yes.", "Yes", "exact")
    assert not grade("2", "3", "math_verify")
    with pytest.raises(MentaleseError, match="'fuzzy'.*numeric, math_verify, exact"):
        grade("1", "1", "fuzzy")


# --- metrics ------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (5, 2, 1, 0.4),
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (10, 0, 5, 0.0),
        (3, 3, 2, 1.0),
        (4, 2, 3, 1.0),  # n - c < k: every 3-subset holds a correct sample
        (1, 1, 1, 1.0),
    ],
)
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_brute_force():
    for n in range(1, 8):
        for c in range(n + 1):
            samples = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(samples, k))
                brute = sum(any(s) for s in subsets) / len(subsets)
                assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)
                assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)


@pytest.mark.parametrize("n, c, k", [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6), (0, 0, 1)])
def test_pass_at_k_rejects_bad_arguments(n, c, k):
    with pytest.raises(MentaleseError):
        pass_at_k(n, c, k)


def test_mean_pass_at_k():
    assert mean_pass_at_k([2, 0, 5], n=5, k=1) == pytest.approx((0.4 + 0.0 + 1.0) / 3)
    with pytest.raises(MentaleseError):
        mean_pass_at_k([], n=5, k=1)
    with pytest.raises(MentaleseError):
        mean_pass_at_k([6], n=5, k=1)


def test_majority_vote():
    assert majority_vote(["3", None, "4", "4", None, None]) == "4"
    assert majority_vote(["3", "4", "4", "3"]) == "3"  # tie: first seen wins
    assert majority_vote(["18.0", "17", "18", "17"]) == "17"  # raw strings: 17 has two votes
    assert majority_vote(["18.0", "17", "18", "17", "$18"], normalise=normalise_number) == "18.0"
    assert majority_vote([None, None]) is None
    assert majority_vote([]) is None


def test_normalise_number():
    assert normalise_number("18.0") == normalise_number("$18") == "18"
    assert normalise_number("1,800.00") == "1800"
    assert normalise_number("0.50") == "0.5"
    assert normalise_number("3/4") == "0.75"
    assert normalise_number(" Tom ") == "Tom"


def test_summarise_latencies():
    summary = summarise_latencies([4.0, 1.0, 2.0, 3.0])
    assert summary == {"count": 4, "mean": 2.5, "median": 2.5, "p90": pytest.approx(3.7), "max": 4.0}
    assert summarise_latencies([2.0])["p90"] == 2.0
    with pytest.raises(MentaleseError):
        summarise_latencies([])
    with pytest.raises(MentaleseError):
        summarise_latencies([1.0, -0.5])
