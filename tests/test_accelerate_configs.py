"""The shipped `accelerate launch` configs go through accelerate's own launch path and build its plugins.

No GPU is needed: `_validate_launch_command` reads the file the way `accelerate launch --config_file` does,
`prepare_*_env` produces the environment the launched processes would get, and the FSDP / DeepSpeed
plugins are built from that environment, as transformers' Trainer builds them in each process.
"""

import pytest
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

from mentalese.accelerate_configs import accelerate_config_path, list_accelerate_configs
from mentalese.errors import MentaleseError

EXPECTED = {"ddp": DistributedType.MULTI_GPU, "fsdp": DistributedType.FSDP,
            "deepspeed_zero2": DistributedType.DEEPSPEED, "deepspeed_zero3": DistributedType.DEEPSPEED}


def _launch_env(name: str) -> dict[str, str]:
    args = launch_command_parser().parse_args(["--config_file", str(accelerate_config_path(name)), "train.py"])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)  # as launch_command
        return prepare_deepspeed_cmd_env(args)[1]
    return prepare_multi_gpu_env(args)


def test_every_config_is_tested():
    assert set(list_accelerate_configs()) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_parses(name):
    cfg = load_config_from_file(str(accelerate_config_path(name)))  # rejects unknown top-level keys
    assert isinstance(cfg, ClusterConfig) and cfg.distributed_type == EXPECTED[name]
    assert cfg.mixed_precision == "no", "precision must come from the recipe (bf16: true)"
    known = {action.dest for action in launch_command_parser()._actions}
    for key in {**(cfg.fsdp_config or {}), **(cfg.deepspeed_config or {})}:  # nested keys become launch flags
        assert key in known, f"{name}: {key!r} is not an accelerate launch option"


def test_fsdp_plugin_from_launch_env(monkeypatch):
    for key, value in _launch_env("fsdp").items():
        monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and "FULL_STATE_DICT" in str(plugin.state_dict_type)
    assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"


@pytest.mark.parametrize("name,stage", [("deepspeed_zero2", 2), ("deepspeed_zero3", 3)])
def test_deepspeed_plugin_from_launch_env(monkeypatch, name, stage):
    for key, value in _launch_env(name).items():
        monkeypatch.setenv(key, value)
    plugin = DeepSpeedPlugin()
    ds = plugin.deepspeed_config
    assert plugin.zero_stage == stage and ds["zero_optimization"]["stage"] == stage
    # batch sizes, accumulation and clipping stay "auto": Trainer fills them from the recipe
    auto = ("gradient_accumulation_steps", "train_micro_batch_size_per_gpu", "gradient_clipping")
    assert all(ds[key] == "auto" for key in auto)
    if stage == 3:
        assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_unknown_config_name():
    with pytest.raises(MentaleseError, match="shipped"):
        accelerate_config_path("ddp_typo")
