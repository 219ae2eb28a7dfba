"""Config loading: YAML recipes + key=value overrides into dataclasses, with checking and coercion."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pytest

from mentalese.config import build_config, config_to_dict, load_config, parse_overrides, save_config
from mentalese.decoding import DecodeConfig
from mentalese.errors import MentaleseError


@dataclass
class Optim:
    lr: float = 1e-4
    steps: int = 10
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class Run:
    name: str = "run"
    seed: int = 0
    ratio: float = 0.5
    flag: bool = False
    limit: Optional[int] = None
    tag: str | None = None
    tags: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    optim: Optim = field(default_factory=Optim)


@dataclass
class NeedsName:
    name: str
    size: int = 1


def write(tmp_path, text, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# --- loading and coercion -------------------------------------------------------------------


def test_defaults_without_recipe():
    assert load_config(Run) == Run()


def test_yaml_and_overrides(tmp_path):
    recipe = write(tmp_path, "name: base\nseed: 3\noptim:\n  lr: 0.01\n  steps: 7\ntags: [a, b]\n")
    cfg = load_config(Run, recipe, ["seed=5", "optim.lr=1e-3", "flag=true", "limit=12"])
    assert cfg == Run(name="base", seed=5, flag=True, limit=12, tags=["a", "b"], optim=Optim(lr=0.001, steps=7))


def test_string_values_are_coerced():
    # YAML reads 1e-3 (no dot) as a string; the float field turns it into 0.001
    cfg = build_config(Run, {"ratio": "1e-3", "flag": "true", "seed": "42", "optim": {"lr": "2e-5", "steps": "3"}})
    assert cfg.ratio == 0.001 and isinstance(cfg.ratio, float)
    assert cfg.flag is True
    assert cfg.seed == 42 and isinstance(cfg.seed, int)
    assert cfg.optim.lr == 2e-5 and cfg.optim.steps == 3
    assert build_config(Run, {"flag": "False"}).flag is False
    assert build_config(Run, {"flag": "no"}).flag is False
    assert build_config(Run, {"ratio": 2}).ratio == 2.0 and isinstance(build_config(Run, {"ratio": 2}).ratio, float)
    assert build_config(Run, {"seed": 4.0}).seed == 4
    assert build_config(Run, {"name": 12}).name == "12"


def test_yaml_1e_minus_3_in_a_recipe(tmp_path):
    recipe = write(tmp_path, "ratio: 1e-3\noptim:\n  lr: 3e-4\n")
    cfg = load_config(Run, recipe, ["optim.steps=100"])
    assert (cfg.ratio, cfg.optim.lr, cfg.optim.steps) == (0.001, 0.0003, 100)


def test_override_value_forms():
    cfg = load_config(Run, None, ["tags=[x, y]", "ids=[1, 2]", "name=a=b", "tag=", "limit=null"])
    assert cfg.tags == ["x", "y"] and cfg.ids == [1, 2]
    assert cfg.name == "a=b"  # split at the first '='
    assert cfg.tag == ""
    assert cfg.limit is None
    assert load_config(Run, None, ["tags=solo"]).tags == ["solo"]  # a scalar for a list field


def test_optional_fields():
    assert build_config(Run, {"limit": None}).limit is None
    assert build_config(Run, {"limit": "7"}).limit == 7
    assert build_config(Run, {"tag": 5}).tag == "5"
    with pytest.raises(MentaleseError, match="limit"):
        build_config(Run, {"limit": "many"})


def test_dotted_override_keeps_sibling_keys(tmp_path):
    recipe = write(tmp_path, "optim:\n  lr: 0.5\n  steps: 9\n")
    cfg = load_config(Run, recipe, ["optim.lr=0.25"])
    assert cfg.optim == Optim(lr=0.25, steps=9)


def test_later_override_wins():
    assert load_config(Run, None, ["seed=1", "seed=2"]).seed == 2


def test_parse_overrides():
    assert parse_overrides(["a=1", "b.c=x", "b.d=[1, 2]"]) == {"a": 1, "b": {"c": "x", "d": [1, 2]}}




def test_list_elements_are_coerced(tmp_path):
    recipe = write(tmp_path, "optim:\n  betas: [1e-3, 0.5]\nids: ['1', '2']\n")
    cfg = load_config(Run, recipe)
    assert cfg.optim.betas == [0.001, 0.5]
    assert cfg.ids == [1, 2]


# --- errors ------------------------------------------------------------------------------------


def test_unknown_key_suggests_close_match(tmp_path):
    recipe = write(tmp_path, "sede: 1\n")
    with pytest.raises(MentaleseError, match="sede") as info:
        load_config(Run, recipe)
    assert "seed" in str(info.value).replace("sede", "")
    assert str(recipe) in str(info.value)


def test_unknown_override_key_suggests_close_match():
    with pytest.raises(MentaleseError, match="ratoi") as info:
        load_config(Run, None, ["ratoi=0.1"])
    assert "'ratio'" in str(info.value)


def test_unknown_nested_key():
    with pytest.raises(MentaleseError, match="stpes") as info:
        load_config(Run, None, ["optim.stpes=3"])
    assert "'steps'" in str(info.value)
    assert "optim" in str(info.value)


def test_unknown_key_without_close_match():
    with pytest.raises(MentaleseError, match="zzzzzz") as info:
        load_config(Run, None, ["zzzzzz=1"])
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize(
    "values, key",
    [
        ({"seed": "abc"}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": True}, "seed"),
        ({"ratio": "fast"}, "ratio"),
        ({"flag": "maybe"}, "flag"),
        ({"flag": 2}, "flag"),
        ({"name": {"a": 1}}, "name"),
        ({"optim": 3}, "optim"),
        ({"optim": {"lr": "x"}}, "lr"),
        ({"tags": {"a": 1}}, "tags"),
    ],
)
def test_bad_values(values, key):
    with pytest.raises(MentaleseError, match=key):
        build_config(Run, values)


def test_malformed_override():
    with pytest.raises(MentaleseError, match="foo"):
        load_config(Run, None, ["foo"])


def test_invalid_yaml(tmp_path):
    recipe = write(tmp_path, "seed: [1, 2\nname: x\n")
    with pytest.raises(MentaleseError, match="YAML"):
        load_config(Run, recipe)


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "just a string\n", "42\n"])
def test_non_mapping_yaml(tmp_path, text):
    recipe = write(tmp_path, text)
    with pytest.raises(MentaleseError, match="mapping"):
        load_config(Run, recipe)


def test_empty_yaml_gives_defaults(tmp_path):
    assert load_config(Run, write(tmp_path, "")) == Run()
    assert load_config(Run, write(tmp_path, "# only a comment\n", "c.yaml")) == Run()


def test_missing_recipe(tmp_path):
    with pytest.raises(MentaleseError, match="not found"):
        load_config(Run, tmp_path / "nope.yaml")


def test_missing_required_field():
    with pytest.raises(MentaleseError, match="invalid"):
        build_config(NeedsName, {"size": 2})
    assert build_config(NeedsName, {"name": "x"}) == NeedsName("x")


# --- saving ------------------------------------------------------------------------------------


def test_save_config_round_trip(tmp_path):
    cfg = Run(name="exp 1: a/b", seed=7, ratio=1e-3, flag=True, limit=None, tag="t", tags=["x", "y z"],
              ids=[3, 4], optim=Optim(lr=3e-5, steps=2, betas=[0.8, 0.95]))
    path = tmp_path / "out" / "nested" / "config.yaml"
    save_config(cfg, path)
    assert path.is_file()
    again = load_config(Run, path)
    assert again == cfg
    assert config_to_dict(again) == config_to_dict(cfg)
    assert list(config_to_dict(cfg)) == ["name", "seed", "ratio", "flag", "limit", "tag", "tags", "ids", "optim"]


def test_save_config_round_trip_defaults(tmp_path):
    save_config(Run(), tmp_path / "c.yaml")
    assert load_config(Run, tmp_path / "c.yaml") == Run()


def test_decode_config_round_trip(tmp_path):
    cfg = DecodeConfig(max_new_tokens=12, do_sample=True, temperature=0.7, top_p=0.9, stop_token_ids=[5, 6])
    save_config(cfg, tmp_path / "d.yaml")
    assert load_config(DecodeConfig, tmp_path / "d.yaml") == cfg


# --- DecodeConfig --------------------------------------------------------------------------------


def test_decode_config_from_dict():
    cfg = build_config(DecodeConfig, {"max_new_tokens": "32", "temperature": "7e-1", "do_sample": "true",
                                      "top_k": 5, "stop_token_ids": [7], "batch_size": 4})
    assert cfg == DecodeConfig(max_new_tokens=32, temperature=0.7, do_sample=True, top_k=5, stop_token_ids=[7],
                               batch_size=4)
    assert cfg.sampling().temperature == 0.7


@pytest.mark.parametrize(
    "override, key",
    [
        ("temperature=-1", "temperature"),
        ("temperature=-0.5", "temperature"),
        ("top_p=0", "top_p"),
        ("min_p=1.0", "min_p"),
        ("max_new_tokens=0", "max_new_tokens"),
        ("batch_size=-2", "batch_size"),
    ],
)
def test_decode_config_rejects_bad_values(override, key):
    with pytest.raises(MentaleseError, match=key):
        load_config(DecodeConfig, None, [override])


def test_decode_config_negative_temperature_from_dict():
    with pytest.raises(MentaleseError, match="temperature"):
        build_config(DecodeConfig, {"temperature": -1.0})


def test_decode_config_unknown_key():
    with pytest.raises(MentaleseError, match="max_new_token") as info:
        load_config(DecodeConfig, None, ["max_new_token=3"])
    assert "'max_new_tokens'" in str(info.value)


def test_override_that_is_not_yaml_is_taken_as_text():
    from mentalese.config import parse_overrides

    assert parse_overrides(["prompt={question}\n<think>"]) == {"prompt": "{question}\n<think>"}


# --- errors inside nested configs name the dotted path ----------------------------------------


@dataclass
class Deep:
    size: int = 1
    kind: str = "a"
    low: int = 0
    high: int = 10

    def __post_init__(self):
        if self.size < 1:
            raise MentaleseError(f"size must be >= 1, got {self.size}")
        if self.kind not in ("a", "b"):
            raise MentaleseError(f"the kind of a deep thing must be a or b, got {self.kind!r}")
        if self.low > self.high:
            raise MentaleseError("the bounds are crossed")


@dataclass
class Middle:
    deep: Deep | None = None
    either: int | Deep = 0


@dataclass
class Top:
    middle: Optional[Middle] = None


@pytest.mark.parametrize("override, message", [
    ("middle.deep.size=0", "config.middle.deep.size must be >= 1, got 0"),  # the rule names its field
    ("middle.deep.kind=c", "config.middle.deep.kind: the kind of a deep thing must be a or b, got 'c'"),  # it does not
    ("middle.deep.size=x", "config.middle.deep.size: expected int, got 'x'"),
    ("middle.deep.sise=2", "unknown key 'sise' in config.middle.deep (did you mean 'size'?)"),
    ("middle.either.size=0", "config.middle.either.size must be >= 1, got 0"),  # a mapping: the dataclass's reason
    ("middle.either=x", "config.middle.either: cannot use 'x' as int or Deep"),
])
def test_nested_errors_name_the_path_and_the_rule(override, message):
    with pytest.raises(MentaleseError) as info:
        load_config(Top, None, [override])
    assert str(info.value) == message


def test_a_rule_over_several_fields_names_the_nested_config():
    # neither value breaks the rule alone (against the other's default), so no one field is blamed
    with pytest.raises(MentaleseError) as info:
        load_config(Top, None, ["middle.deep.low=5", "middle.deep.high=2"])
    assert str(info.value) == "config.middle.deep: the bounds are crossed"


def test_top_level_validation_messages_are_unchanged():
    with pytest.raises(MentaleseError) as info:
        build_config(Deep, {"size": 0})
    assert str(info.value) == "size must be >= 1, got 0"
