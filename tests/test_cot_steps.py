"""`step_result`, the one reader of "the result of a CoT step", on hand-written and real GSM8k-Aug steps,
and its two users (the CODI probe's matching, the CODI thought-loss targets) on real rows."""

import re

import pytest

from mentalese.analysis.codi_probe import aligned_top1_match, intermediate_match
from mentalese.methods.codi.data import step_result_ids
from mentalese.methods.formatting import IGNORE_INDEX
from mentalese.models.tiny import char_tokenizer
from mentalese.tasks.benchmarks import generate_multiplication
from mentalese.tasks.cot_steps import step_result
from mentalese.tasks.registry import load_benchmark
from mentalese.tasks.synthetic import generate_chain


@pytest.mark.parametrize("step, result", [
    ("<<600*30/100=180>>", "180"),
    ("600*30/100=180", "180"),
    ("9*2=8", "8"),
    ("a=b=7 ", "7"),
    ("<<100-150=-50>>", "-50"),
    ("<<3+2.5=5.5>>", "5.5"),
    ("<<40/100=.4>>", ".4"),
    ("<<2*2.25=4.50>>", "4.50"),
    ("5*250=1,250", "1250"),
    ("2+3=5.", "5"),
    ("2+3=5, so", "5"),
    ("He pays 100*3 = $300 per year.", "300"),
    ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.", "24"),
])
def test_step_result_reads_the_number_after_the_last_equals_sign(step, result):
    assert step_result(step) == result


@pytest.mark.parametrize("step", ["no equation", "5 5 5 6 1", "<<3/4=3/4>>", "x=", "x = y", "1+1=1,2"])
def test_step_result_is_none_without_a_number_after_the_last_equals_sign(step):
    assert step_result(step) is None


def _evaluate(expression: str) -> float:
    assert re.fullmatch(r"[\d+\-*/.() ]+", expression), expression  # arithmetic only
    return eval(expression, {"__builtins__": {}})  # noqa: S307


def gsm8k_aug_rows(n: int = 20):
    rows = [ex for ex in load_benchmark("gsm8k-aug", "valid", limit=n + 5) if ex.cot_steps][:n]
    assert len(rows) == n and all(s.startswith("<<") and s.endswith(">>") for ex in rows for s in ex.cot_steps)
    return rows


def test_every_real_gsm8k_aug_step_has_its_computed_result():
    checked = 0
    for ex in gsm8k_aug_rows():
        for step in ex.cot_steps:
            result = step_result(step)
            assert result is not None and re.fullmatch(r"-?\d*\.?\d+", result), (step, result)
            expression = step[2:-2].rsplit("=", 1)[0]
            assert float(result) == pytest.approx(_evaluate(expression), rel=1e-6, abs=1e-9), step
            checked += 1
    assert checked >= 40


def test_the_chain_task_steps_read_back_their_results():
    for ex in generate_chain("test", num_examples=20, num_steps=3, modulus=10):
        for step in ex.cot_steps:
            assert step_result(step) == str(_evaluate(step.split("=")[0]) % 10)


def test_multiplication_steps_have_no_result():
    (ex,) = generate_multiplication(4, num_examples=1)
    assert ex.cot_steps and all(step_result(s) is None for s in ex.cot_steps)


def test_the_probe_matches_thoughts_that_decode_to_the_real_step_results():
    rows = gsm8k_aug_rows(5)
    # thought j's top-1 token is step j's result (as the tokenizer would decode it: a leading space)
    table = [[[(" " + step[2:-2].rsplit("=", 1)[1], 0.9), ("x", 0.1)] for step in ex.cot_steps] for ex in rows]
    steps = max(len(ex.cot_steps) for ex in rows)
    everything = {f"step_{j + 1}": 1.0 for j in range(steps)}
    assert intermediate_match(table, rows) == everything
    assert aligned_top1_match(table, rows) == everything


def test_thought_loss_targets_are_the_first_token_of_each_real_step_result():
    tok = char_tokenizer()
    first_char = lambda text: tok(text, add_special_tokens=False)["input_ids"][0]  # noqa: E731
    for ex in gsm8k_aug_rows():
        assert step_result_ids(tok, ex.cot_steps) == [first_char(step_result(s)) for s in ex.cot_steps]
    assert step_result_ids(tok, ["5 5 6", "<<3/4=3/4>>"]) == [IGNORE_INDEX, IGNORE_INDEX]
