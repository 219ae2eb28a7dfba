"""The built-in chain task: determinism, disjoint splits, knobs, bad options."""

import pytest

from mentalese.errors import MentaleseError
from mentalese.tasks.registry import load_benchmark
from mentalese.tasks.synthetic import generate_chain, split_of


def evaluate_left_to_right(question: str, modulus: int) -> int:
    import re

    tokens = re.findall(r"[-+*]|\d+", question)
    value = int(tokens[0])
    for op, num in zip(tokens[1::2], tokens[2::2]):
        value = {"+": value + int(num), "-": value - int(num), "*": value * int(num)}[op] % modulus
    return value


def test_answers_and_steps_are_correct():
    for ex in generate_chain("test", num_examples=200, num_steps=5, modulus=13):
        assert int(ex.answer) == evaluate_left_to_right(ex.question, 13)
        assert len(ex.cot_steps) == 5
        assert ex.cot_steps[-1].endswith(f"={ex.answer}")


def test_hand_checked_step_format():
    ex = generate_chain("test", num_examples=1)[0]
    first, op, operand = ex.question[0], ex.question[1], ex.question[2]
    assert ex.cot_steps[0].startswith(f"{first}{op}{operand}=")


def test_deterministic_and_seeded():
    a = generate_chain("train", num_examples=50, seed=3)
    b = generate_chain("train", num_examples=50, seed=3)
    c = generate_chain("train", num_examples=50, seed=4)
    assert [e.question for e in a] == [e.question for e in b]
    assert [e.question for e in a] != [e.question for e in c]


def test_splits_are_disjoint_and_distinct():
    splits = {s: {e.question for e in generate_chain(s, num_examples=n)} for s, n in
              [("train", 3000), ("valid", 300), ("test", 300)]}
    assert len(splits["train"]) == 3000
    assert not splits["train"] & splits["test"]
    assert not splits["train"] & splits["valid"]
    assert not splits["valid"] & splits["test"]
    assert all(split_of(q) == "test" for q in splits["test"])


def test_registry_passes_generator_options():
    exs = load_benchmark("chain", "valid", num_steps=2, num_examples=10)
    assert len(exs) == 10 and all(len(e.cot_steps) == 2 for e in exs)


@pytest.mark.parametrize("kwargs, message", [
    ({"split": "dev"}, "splits"),
    ({"num_steps": 0}, "num_steps"),
    ({"modulus": 1}, "modulus"),
    ({"ops": "/"}, "ops"),
    ({"num_examples": 0}, "num_examples"),
    ({"num_steps": 1, "num_examples": 10_000}, "do not exist"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(MentaleseError, match=message):
        generate_chain(**kwargs)


def solve_premises(question: str, modulus: int) -> int:
    """Evaluate a shuffled-premise question by following the names (independent of the generator)."""
    *premises, target = question.split(";")
    defs = dict(p.split("=") for p in premises)
    ops = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y}

    def value(name: str) -> int:
        expr = defs[name]
        left, op, right = expr[0], expr[1], expr[2:]
        base = value(left) if left.isalpha() else int(left)
        return ops[op](base, int(right)) % modulus

    return value(target.rstrip("?"))


def test_shuffled_premises_keep_steps_and_answers():
    plain = generate_chain("test", num_examples=100, num_steps=4)
    shuffled = generate_chain("test", num_examples=100, num_steps=4, shuffle_premises=True)
    assert [e.meta["chain"] for e in shuffled] == [e.question for e in plain]  # same chains, same order
    assert [e.cot_steps for e in shuffled] == [e.cot_steps for e in plain]
    for ex in shuffled:
        assert int(ex.answer) == solve_premises(ex.question, 10)
        assert ex.question.endswith(";d?") and ex.question.count(";") == 4
    firsts = {ex.question.split(";")[0][0] for ex in shuffled}
    assert len(firsts) == 4, "the first listed premise must vary: no fixed position pattern"


def test_hand_checked_shuffled_question():
    import random

    from mentalese.tasks.synthetic import shuffled_premises

    q = shuffled_premises("7+5*3-4", random.Random(0))
    assert sorted(q[:-3].split(";")) == ["a=7+5", "b=a*3", "c=b-4"] and q.endswith(";c?")
    assert solve_premises(q, 10) == 2


def test_mixed_chain_lengths():
    exs = generate_chain("train", num_examples=300, num_steps=[1, 3, 6])
    lengths = {len(e.cot_steps) for e in exs}
    assert lengths == {1, 3, 6}
    assert all(e.meta["num_steps"] == len(e.cot_steps) for e in exs)
    with pytest.raises(MentaleseError, match="num_steps"):
        generate_chain("train", num_examples=5, num_steps=[])
    with pytest.raises(MentaleseError, match="num_steps"):
        generate_chain("train", num_examples=5, num_steps=[2, 30])
