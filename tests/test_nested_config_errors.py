"""A bad value inside an optional nested config (`soft_thinking: SoftThinkingConfig | None`) is reported with
its dotted path and the rule it breaks, not as "cannot use {...} as SoftThinkingConfig | None"."""

import re

import pytest

from mentalese.config import load_config
from mentalese.errors import MentaleseError
from mentalese.evaluation.harness import EvalConfig
from test_bad_input import assert_no_partial_outputs, run_cli_error

CASES = [  # (override, regex the one error line must contain)
    ("soft_thinking.max_topk=0", r"config\.soft_thinking\.max_topk must be an integer >= 1, got 0"),
    ("soft_thinking.mode=soft",  # the path, then soft_thinking.py's rule (with or without the field name in it)
     r"config\.soft_thinking\.mode(: [\w ]*)? must be one of \W*vanilla\W+dirichlet\W+gumbel\W*, got 'soft'"),
    ("soft_thinking.top_p=1.5", r"config\.soft_thinking\.top_p must be in \(0, 1\], got 1\.5"),
    ("soft_thinking.max_topk=abc", r"config\.soft_thinking\.max_topk: expected int, got 'abc'"),
    ("soft_thinking.cold_stop=maybe", r"config\.soft_thinking\.cold_stop: expected true/false, got 'maybe'"),
    ("decode.top_k=-1", r"config\.decode\.top_k must be an integer >= 0, got -1"),
    ("soft_thinking.gumbel_tau=-1", r"config\.soft_thinking\.gumbel_tau must be > 0, got -1"),
]


@pytest.mark.parametrize("override, message", CASES, ids=[o for o, _ in CASES])
def test_load_config_names_the_nested_field_and_rule(override, message):
    with pytest.raises(MentaleseError) as info:
        load_config(EvalConfig, None, ["model=x", override])
    assert re.search(message, str(info.value)) and "cannot use" not in str(info.value), str(info.value)


@pytest.mark.parametrize("override, message", CASES, ids=[o for o, _ in CASES])
def test_cli_names_the_nested_field_and_rule(override, message, tmp_path, capsys):
    out = tmp_path / "out"
    err = run_cli_error(capsys, "eval", "model=x", override, f"output_dir={out}")
    assert re.search(message, err) and "cannot use" not in err, err
    assert_no_partial_outputs(out)


def test_a_recipe_file_names_the_nested_field_too(tmp_path):
    recipe = tmp_path / "soft.yaml"
    recipe.write_text("model: x\nsoft_thinking:\n  max_topk: 0\n")
    with pytest.raises(MentaleseError, match=r"soft\.yaml\.soft_thinking\.max_topk must be an integer >= 1, got 0"):
        load_config(EvalConfig, recipe)


def test_good_nested_values_load_and_a_non_mapping_is_named():
    cfg = load_config(EvalConfig, None, ["model=x", "soft_thinking.max_topk=3", "soft_thinking.mode=gumbel"])
    assert cfg.soft_thinking.max_topk == 3 and cfg.soft_thinking.mode == "gumbel"
    assert load_config(EvalConfig, None, ["model=x", "soft_thinking=null"]).soft_thinking is None
    with pytest.raises(MentaleseError, match="config.soft_thinking: expected a mapping, got 5"):
        load_config(EvalConfig, None, ["model=x", "soft_thinking=5"])
