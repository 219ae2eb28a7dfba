"""The probe's bookkeeping: which CoT step results show up among the thoughts' top-k tokens."""

from mentalese.analysis.codi_probe import aligned_top1_match, intermediate_match, step_result
from mentalese.tasks.example import Example


def test_step_result():
    assert step_result("7+5=2") == "2" and step_result("<<16-3-4=9>>".strip("<>")) == "9"
    assert step_result("no equation") is None


def test_intermediate_match_counts_results_in_any_thought():
    examples = [Example("7+5*3", "6", ["7+5=2", "2*3=6"]), Example("1+1*4", "8", ["1+1=2", "2*4=8"])]
    table = [  # per example, per thought: top-k (token, prob)
        [[("2", 0.9), ("3", 0.1)], [(" ", 0.5), ("6", 0.4)]],
        [[("5", 0.6), ("1", 0.4)], [("8", 0.7), ("2", 0.2)]],
    ]
    # step 1 result "2": found in both examples; step 2 result: "6" found, "8" found
    assert intermediate_match(table, examples) == {"step_1": 1.0, "step_2": 1.0}
    table[1][1] = [("9", 0.7), ("0", 0.2)]
    assert intermediate_match(table, examples) == {"step_1": 0.5, "step_2": 0.5}


def test_aligned_top1_match_needs_the_result_first_in_its_own_thought():
    examples = [Example("7+5*3", "6", ["7+5=2", "2*3=6"]), Example("1+1*4", "8", ["1+1=2", "2*4=8"])]
    table = [
        [[("2", 0.9), ("3", 0.1)], [(" ", 0.5), ("6", 0.4)]],  # step 2's "6" is only second: a miss
        [[("2", 0.6), ("1", 0.4)], [("8", 0.7), ("2", 0.2)]],
    ]
    assert aligned_top1_match(table, examples) == {"step_1": 1.0, "step_2": 0.5}
    table[0] = [[("6", 0.9)], [("2", 0.9)]]  # right results in the wrong thoughts
    assert aligned_top1_match(table, examples) == {"step_1": 0.5, "step_2": 0.5}
