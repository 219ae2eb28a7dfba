"""The fields every training run has live once (methods/base_config.py); SFT, CODI and BoLT get them from there.

A config may give a shared field another default or a note (`shared_field`), never its own copy; and bad values
of those fields get the same one-line error from every config.
"""

from __future__ import annotations

import dataclasses
import typing

import pytest
from transformers import TrainingArguments

from mentalese.config import load_config
from mentalese.errors import MentaleseError
from mentalese.methods.base_config import SHARED_FIELDS, SupervisedRunFields, TrainRunFields, shared_field
from mentalese.methods.bolt.config import BoltConfig
from mentalese.methods.codi.config import CODIConfig
from mentalese.methods.sft import SFTConfig

CONFIGS = [SFTConfig, CODIConfig, BoltConfig]
SUPERVISED = [SFTConfig, CODIConfig]
TRAINER_FIELDS = {f.name for f in dataclasses.fields(TrainingArguments)}
# same name, different meaning (SFT: the whole example; CODI: each piece), so not shared
NOT_SHARED = {"max_length"}


def own_fields(cls) -> set[str]:
    return set(vars(cls).get("__annotations__", {}))


def test_the_shared_fields():
    assert set(SHARED_FIELDS) == {"model_name_or_path", "tiny_model_options", "dtype", "task", "task_options",
                                  "train_split", "data_dir", "train_limit", "answer_prompt", "lora", "resume"}
    assert all(f.metadata.get("help") for f in SHARED_FIELDS.values())


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_each_config_gets_the_shared_fields_from_the_base(cls):
    base = SupervisedRunFields if cls in SUPERVISED else TrainRunFields
    assert issubclass(cls, base)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    base_hints, hints = typing.get_type_hints(base), typing.get_type_hints(cls)
    for name in set(base.__dataclass_fields__) - TRAINER_FIELDS:
        assert name in fields, name
        assert hints[name] == base_hints[name], name
        assert fields[name].metadata["help"].startswith(SHARED_FIELDS[name].metadata["help"]), name
        if name in own_fields(cls):  # redeclared: only through shared_field (another default or a note)
            assert fields[name].metadata.get("shared"), f"{cls.__name__}.{name} is a copy; use shared_field"


def test_no_other_field_is_copied_between_configs():
    seen: dict[str, str] = {}
    for cls in CONFIGS:
        for name in own_fields(cls) - set(SHARED_FIELDS) - NOT_SHARED:
            assert name not in seen, f"{name} is declared by {seen[name]} and {cls.__name__}: move it to base_config"
            seen[name] = cls.__name__


def test_method_defaults_and_notes(tmp_path):
    bolt = BoltConfig(output_dir=str(tmp_path))
    assert (bolt.model_name_or_path, bolt.dtype, bolt.task) == ("TinyLlama/TinyLlama_v1.1", "auto", "math")
    sft = SFTConfig(output_dir=str(tmp_path))
    assert (sft.model_name_or_path, sft.dtype, sft.task, sft.lora) == ("tiny-gpt2", "float32", "chain", None)
    help_of = {f.name: f.metadata["help"] for f in dataclasses.fields(CODIConfig)}
    assert "official: r=128" in help_of["lora"]
    with pytest.raises(MentaleseError, match="'learning_rate' is not a shared training field"):
        shared_field("learning_rate", 1.0)


BAD = [
    ("model_name_or_path=tiny-gpt5", "unknown tiny model 'tiny-gpt5'; choose tiny-{gpt2,llama,qwen2,qwen3}"),
    ("dtype=fp33", "unknown dtype 'fp33'; choose auto or one of "
                   "['bf16', 'bfloat16', 'float16', 'float32', 'fp16', 'fp32']"),
]
BAD_SUPERVISED = [
    ("lora={r: 0}", "lora.r must be >= 1, got 0"),
    ("lora={alpha: 0}", "lora.alpha must be > 0, got 0"),
    ("lora={dropout: 1.0}", "lora.dropout must be in [0, 1), got 1.0"),
    ("lora={target_modules: []}", "lora.target_modules must name at least one module (or be 'all-linear')"),
    ("train_limit=0", "train_limit must be >= 1, got 0"),
]


def error_of(cls, tmp_path, *overrides: str) -> str:
    with pytest.raises(MentaleseError) as info:
        load_config(cls, None, [f"output_dir={tmp_path}", "report_to=none", *overrides])
    return str(info.value)


@pytest.mark.parametrize("override, message", BAD)
def test_the_same_one_line_error_from_every_config(tmp_path, override, message):
    assert {cls.__name__: error_of(cls, tmp_path, override) for cls in CONFIGS} == \
        {cls.__name__: message for cls in CONFIGS}


def test_tiny_model_options_need_a_tiny_model(tmp_path):
    errors = {error_of(cls, tmp_path, "model_name_or_path=gpt2", "tiny_model_options={n_layer: 4}")
              for cls in CONFIGS}
    assert errors == {"tiny_model_options apply to tiny-<arch> models only, not 'gpt2'"}


@pytest.mark.parametrize("override, message", BAD_SUPERVISED)
def test_the_same_lora_and_data_errors_from_sft_and_codi(tmp_path, override, message):
    assert [error_of(cls, tmp_path, override) for cls in SUPERVISED] == [message, message]


def test_lora_from_a_mapping_when_built_directly(tmp_path):
    cfg = CODIConfig(output_dir=str(tmp_path), lora={"r": 4, "target_modules": ["c_attn"]})
    assert cfg.lora.r == 4 and not cfg.special_tokens_trainable
