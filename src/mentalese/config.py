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
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mentalese.atomic_files import write_text_atomic
from mentalese.errors import MentaleseError

T = TypeVar("T")


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """['a=1', 'b.c=x'] -> {'a': 1, 'b': {'c': 'x'}} (values parsed as YAML scalars/lists)."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise MentaleseError(f"override {item!r} is not of the form key=value")
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
        raise MentaleseError(f"recipe {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise MentaleseError(f"recipe {path} is not UTF-8 text (bad byte at offset {e.start})") from None
    except yaml.YAMLError as e:
        raise MentaleseError(f"recipe {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise MentaleseError(f"recipe {path} must be a mapping of config keys")
    return data


# keys that moved elsewhere: the error says where to set them instead
_MOVED = {"SoftThinkingConfig": {"answer": "answer-token sampling is set by decode.do_sample/temperature/top_k/"
                                           "top_p/min_p; soft_thinking.answer was removed"},
          "CODIConfig": {"thought_loss_weight": "renamed: set step_supervision.kind=result_token "
                                                "step_supervision.weight=1 (kind=none for 0)"}}


def build_config(cls: type[T], values: dict[str, Any], where: str = "config", nested: bool = False) -> T:
    """Instantiate dataclass `cls` from a (nested) mapping, checking keys and coercing types.

    `nested`: `cls` is the field `where` of an outer config; its own validation errors then get the
    dotted path of the field they concern ('config.soft_thinking.max_topk must be ...')."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            if key in _MOVED.get(cls.__name__, {}):
                hint = f" ({_MOVED[cls.__name__][key]})"
            raise MentaleseError(f"unknown key {key!r} in {where}{hint}")
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    for key, (ok, bound) in _RANGES.items():
        value = kwargs.get(key)
        if isinstance(value, (int, float)) and not ok(value):
            raise MentaleseError(f"{where}.{key} must be {bound}, got {value!r}")
    try:
        return cls(**kwargs)
    except MentaleseError as e:
        if not nested:
            raise
        raise MentaleseError(_with_field_path(cls, kwargs, where, str(e))) from None
    except (ValueError, TypeError) as e:
        raise MentaleseError(f"invalid {where}: {str(e).splitlines()[0]}") from None


def _with_field_path(cls: type, kwargs: dict[str, Any], where: str, message: str) -> str:
    """`message` (from `cls`'s own validation) prefixed with the path of the field it concerns: the field
    the message starts with, else the one given value that fails on its own, else `where` alone."""
    first_word = re.match(r"\w+", message)
    if first_word and first_word.group() in {f.name for f in dataclasses.fields(cls) if f.init}:
        return f"{where}.{message}"
    culprits = [key for key, value in kwargs.items() if _fails_alone(cls, key, value)]
    return f"{where}.{culprits[0]}: {message}" if len(culprits) == 1 else f"{where}: {message}"


def _fails_alone(cls: type, key: str, value: Any) -> bool:
    try:
        cls(**{key: value})
    except MentaleseError:
        return True
    except Exception:  # e.g. other required fields missing: cannot tell
        return False
    return False


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
    """`cls` from a recipe YAML (its `method:` key names the recipe's family and is left out) and overrides."""
    from mentalese.recipes import recipe_values

    values = recipe_values(recipe) if recipe else {}
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
        errors = []
        for a in args:
            try:
                return _coerce(value, a, where)
            except MentaleseError as e:
                errors.append((a, e))
        # one candidate (`X | None`), or a mapping given to the one dataclass candidate: its reason is the reason
        mapped = [e for a, e in errors if dataclasses.is_dataclass(a) and isinstance(value, dict)]
        if len(errors) == 1 or len(mapped) == 1:
            raise (errors[0][1] if len(errors) == 1 else mapped[0]) from None
        names = " or ".join(getattr(a, "__name__", str(a)) for a in args)
        raise MentaleseError(f"{where}: cannot use {value!r} as {names}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise MentaleseError(f"{where}: expected a mapping, got {value!r}")
        return build_config(tp, value, where, nested=True)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise MentaleseError(f"{where}: expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise MentaleseError(f"{where}: expected a number, got {value!r}")
        try:
            num = float(value) if tp is float else int(value)
        except (TypeError, ValueError):
            raise MentaleseError(f"{where}: expected {tp.__name__}, got {value!r}") from None
        if tp is int and isinstance(value, float) and value != int(value):
            raise MentaleseError(f"{where}: expected an integer, got {value!r}")
        return num
    if tp is str:
        if isinstance(value, (dict, list)):
            raise MentaleseError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if origin in (list, tuple):
        if isinstance(value, dict):
            raise MentaleseError(f"{where}: expected a list, got {value!r}")
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        (item_type,) = typing.get_args(tp)[:1] or (Any,)
        return [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(items)] if item_type is not Any else items
    return value


# --- `mentalese <verb> --help`: the config fields, read from the dataclass ---------------------------------

@dataclasses.dataclass(frozen=True)
class FieldRow:
    name: str  # dotted for nested dataclasses: "decode.max_new_tokens"
    type: str  # "int", "str | None", "list[str]"
    default: str  # rendered default; "" for an expanded nested config, "(required)" when there is none
    help: str  # the field's metadata "help" text


def describe_fields(cls: type) -> list[FieldRow]:
    """One row per settable field of dataclass `cls`, nested dataclasses expanded (`decode.*`). Fields of a
    base class from outside this package (transformers `TrainingArguments`) are left out, unless redeclared
    here: `external_bases(cls)` names those bases."""
    skip = {id(f) for base in external_bases(cls) for f in dataclasses.fields(base)}
    return _field_rows(cls, "", None, skip)


def external_bases(cls: type) -> list[type]:
    """The dataclass bases of `cls` defined outside mentalese, outermost only (e.g. [TrainingArguments])."""
    outside = [b for b in cls.__mro__[1:] if dataclasses.is_dataclass(b) and not b.__module__.startswith("mentalese")]
    return [b for b in outside if not any(o is not b and issubclass(o, b) for o in outside)]


def format_fields(cls: type) -> str:
    """The field table that `--help` prints, and a last line for the external bases' fields."""
    rows = describe_fields(cls)
    width = [max([len(getattr(r, col)) for r in rows] + [4]) for col in ("name", "type", "default")]
    width = [min(w, limit) for w, limit in zip(width, (34, 26, 24))]
    lines = [f"  {r.name:{width[0]}}  {r.type:{width[1]}}  {r.default:{width[2]}}  {r.help}".rstrip() for r in rows]
    for base in external_bases(cls):
        lines.append(f"  and every {base.__module__.split('.')[0]} {base.__name__} field (see its docs)")
    return "\n".join(lines)


def _field_rows(cls: type, prefix: str, instance: Any, skip: set[int]) -> list[FieldRow]:
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if not f.init or id(f) in skip:
            continue
        name, tp = prefix + f.name, hints[f.name]
        if instance is not None:
            value: Any = getattr(instance, f.name)
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            value = dataclasses.MISSING
        nested = _nested_dataclass(tp)
        expand = nested is not None and (value is None or isinstance(value, nested))
        shown = "" if expand and value is not None else _render_default(value)
        rows.append(FieldRow(name, _type_name(tp), shown, str(f.metadata.get("help", ""))))
        if expand:
            rows += _field_rows(nested, name + ".", value, set())
    return rows


def _nested_dataclass(tp: Any) -> type | None:
    """The dataclass of a field typed `X` or `X | None`, else None."""
    candidates = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    classes = [a for a in candidates if dataclasses.is_dataclass(a)]
    return classes[0] if len(classes) == 1 else None


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "None"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = typing.get_args(tp)
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{', '.join(_type_name(a) for a in args)}]" if args else base
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _render_default(value: Any, limit: int = 24) -> str:
    if value is dataclasses.MISSING:
        return "(required)"
    plain = _plain(value)
    if isinstance(plain, str):
        text = repr(plain)
    else:  # as a recipe writes it: null, true, [a, b], {k: v}
        text = yaml.safe_dump(plain, default_flow_style=True, width=10**6).strip().removesuffix("\n...")
    return text if len(text) <= limit else text[:limit - 3] + "..."
