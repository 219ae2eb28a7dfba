"""Every shipped recipe says its method, parses and builds its config."""

import pytest

from mentalese.api import FAMILIES, eval_config, recipe_family, train_config
from mentalese.config import read_yaml
from mentalese.errors import MentaleseError
from mentalese.evaluation.harness import EvalConfig
from mentalese.recipes import FOLDER_METHODS, METHOD_KEY, list_recipes, recipe_values, resolve_recipe


@pytest.mark.parametrize("name", list_recipes())
def test_recipe_builds(name, tmp_path):
    folder = name.split("/")[0]
    assert folder in FOLDER_METHODS, f"no method registered for recipe folder {folder!r}"
    raw = read_yaml(resolve_recipe(name))
    assert raw[METHOD_KEY] == FOLDER_METHODS[folder] == recipe_family(name)  # every shipped recipe says it
    if recipe_family(name) == "eval":  # evaluation recipes (soft thinking)
        cfg = eval_config(name, [f"output_dir={tmp_path}"])
        assert isinstance(cfg, EvalConfig) and cfg.benchmark and cfg.model and cfg.soft_thinking is not None
    else:
        family, cfg = train_config(name, [f"output_dir={tmp_path}", "bf16=false"])  # bf16: a CPU machine
        assert isinstance(cfg, FAMILIES[family].config) and cfg.task and cfg.model_name_or_path
    assert METHOD_KEY not in recipe_values(resolve_recipe(name))
    assert set(raw) - {METHOD_KEY} <= set(vars(cfg))


def test_recipes_are_shipped():
    assert {"sft/chain_cot", "sft/chain_nocot", "codi/chain", "bolt/toy_chain"} <= set(list_recipes())


def test_unknown_recipe():
    with pytest.raises(MentaleseError, match="shipped recipes"):
        resolve_recipe("sft/does_not_exist")


def test_family_from_the_key_or_the_folder(tmp_path):
    declared = tmp_path / "mine.yaml"
    declared.write_text("method: codi\nnum_latent: 2\n")
    assert recipe_family(declared) == "codi"
    assert train_config(declared, [f"output_dir={tmp_path}"])[1].num_latent == 2
    silent = tmp_path / "silent.yaml"
    silent.write_text("max_steps: 3\n")
    with pytest.raises(MentaleseError, match="does not say its method; add `method: sft|codi|bolt|icot|coconut`"):
        recipe_family(silent)
    odd = tmp_path / "odd.yaml"
    odd.write_text("method: grpo\n")
    with pytest.raises(MentaleseError, match="method: grpo; choose one of sft, codi, bolt, icot, coconut, eval"):
        train_config(odd)
