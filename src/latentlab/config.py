"""Configuration: dataclasses are the source of truth; YAML recipes and `key=value` overrides fill them.

    cfg = load_config(SFTConfig, "recipes/sft/chain_cot.yaml", ["learning_rate=3e-3", "decode.max_new_tokens=64"])

Unknown keys are errors (with the closest known key suggested), values are coerced to the field's
declared type, nested dataclass fields take dotted keys, and `save_config` writes the resolved
config next to the run's outputs.
"""

from __future__ import annotations

import dataclasses
import enum
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from latentlab.atomic_files import write_text_atomic
from latentlab.errors import LatentLabError

T = TypeVar("T")


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """['a=1', 'b.c=x'] -> {'a': 1, 'b': {'c': 'x'}} (values parsed as YAML scalars/lists)."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise LatentLabError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:  # not YAML (e.g. a prompt with newlines): take the text as it is
            value = raw
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise LatentLabError(f"recipe {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise LatentLabError(f"recipe {path} is not UTF-8 text (bad byte at offset {e.start})") from None
    except yaml.YAMLError as e:
        raise LatentLabError(f"recipe {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise LatentLabError(f"recipe {path} must be a mapping of config keys")
    return data


def build_config(cls: type[T], values: dict[str, Any], where: str = "config") -> T:
    """Instantiate dataclass `cls` from a (nested) mapping, checking keys and coercing types."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise LatentLabError(f"unknown key {key!r} in {where}{hint}")
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    for key, (ok, bound) in _RANGES.items():
        value = kwargs.get(key)
        if isinstance(value, (int, float)) and not ok(value):
            raise LatentLabError(f"{where}.{key} must be {bound}, got {value!r}")
    try:
        return cls(**kwargs)
    except LatentLabError:
        raise
    except (ValueError, TypeError) as e:
        raise LatentLabError(f"invalid {where}: {str(e).splitlines()[0]}") from None


# Values that transformers' TrainingArguments accepts but the optimiser or data loader reject
# later, with a traceback and after the run directory was created.
_RANGES = {
    "learning_rate": (lambda v: v >= 0, ">= 0"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "max_grad_norm": (lambda v: v >= 0, ">= 0"),
    "per_device_train_batch_size": (lambda v: v >= 1, ">= 1"),
    "per_device_eval_batch_size": (lambda v: v >= 1, ">= 1"),
    "gradient_accumulation_steps": (lambda v: v >= 1, ">= 1"),
}


def load_config(cls: type[T], recipe: str | Path | None = None, overrides: list[str] | None = None) -> T:
    values = read_yaml(recipe) if recipe else {}
    values = merge(values, parse_overrides(overrides or []))
    return build_config(cls, values, where=str(recipe) if recipe else "config")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML-safe dict of a (nested) config dataclass."""
    return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically (no half-written file if the write fails)."""
    write_text_atomic(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v):
        return config_to_dict(v)
    if isinstance(v, enum.Enum):
        return _plain(v.value)
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return str(v)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        for a in args:
            try:
                return _coerce(value, a, where)
            except LatentLabError:
                continue
        raise LatentLabError(f"{where}: cannot use {value!r} as {tp}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise LatentLabError(f"{where}: expected a mapping, got {value!r}")
        return build_config(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise LatentLabError(f"{where}: expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise LatentLabError(f"{where}: expected a number, got {value!r}")
        try:
            num = float(value) if tp is float else int(value)
        except (TypeError, ValueError):
            raise LatentLabError(f"{where}: expected {tp.__name__}, got {value!r}") from None
        if tp is int and isinstance(value, float) and value != int(value):
            raise LatentLabError(f"{where}: expected an integer, got {value!r}")
        return num
    if tp is str:
        if isinstance(value, (dict, list)):
            raise LatentLabError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if origin in (list, tuple):
        if isinstance(value, dict):
            raise LatentLabError(f"{where}: expected a list, got {value!r}")
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        (item_type,) = typing.get_args(tp)[:1] or (Any,)
        return [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(items)] if item_type is not Any else items
    return value
