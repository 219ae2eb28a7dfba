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
