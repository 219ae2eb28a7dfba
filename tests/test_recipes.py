"""Every shipped recipe parses and builds its config."""

import pytest

from mentalese.config import load_config, read_yaml
from mentalese.errors import MentaleseError
from mentalese.evaluation.harness import EvalConfig
from mentalese.methods.bolt.config import BoltConfig
from mentalese.methods.codi.config import CODIConfig
from mentalese.methods.sft import SFTConfig
from mentalese.recipes import list_recipes, resolve_recipe

CONFIG_FOR = {"sft": SFTConfig, "soft_thinking": EvalConfig, "codi": CODIConfig, "bolt": BoltConfig}


@pytest.mark.parametrize("name", list_recipes())
def test_recipe_builds(name, tmp_path):
    kind = name.split("/")[0]
    assert kind in CONFIG_FOR, f"no config class registered for recipe family {kind!r}"
    trainer_args = ["bf16=false"] if hasattr(CONFIG_FOR[kind], "bf16") else []  # TrainingArguments configs
    cfg = load_config(CONFIG_FOR[kind], resolve_recipe(name), [f"output_dir={tmp_path}"] + trainer_args)
    if isinstance(cfg, EvalConfig):  # evaluation recipes (soft thinking)
        assert cfg.benchmark and cfg.model and cfg.soft_thinking is not None
    else:
        assert cfg.task and cfg.model_name_or_path
    assert set(read_yaml(resolve_recipe(name))) <= set(vars(cfg))


def test_recipes_are_shipped():
    assert {"sft/chain_cot", "sft/chain_nocot"} <= set(list_recipes())


def test_unknown_recipe():
    with pytest.raises(MentaleseError, match="shipped recipes"):
        resolve_recipe("sft/does_not_exist")
