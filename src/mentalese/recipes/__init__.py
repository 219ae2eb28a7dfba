"""Shipped recipes (YAML). `resolve_recipe("sft/chain_cot")` finds one by name.

A recipe says what it is with a top-level `method:` key: `sft`, `codi` or `bolt` (a training run,
`mentalese train`), or `eval` (an evaluation setting, `mentalese eval`; the soft-thinking recipes).
The key names the recipe's family; it is not a config field, so `recipe_values` leaves it out.
A recipe without the key takes its family from the shipped folder it sits in (`FOLDER_METHODS`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mentalese.errors import MentaleseError

RECIPES_DIR = Path(__file__).parent
METHOD_KEY = "method"
EVAL_METHOD = "eval"
FOLDER_METHODS = {"sft": "sft", "codi": "codi", "bolt": "bolt", "soft_thinking": EVAL_METHOD, "coconut": "coconut", "icot": "icot"}


def list_recipes() -> list[str]:
    return sorted(str(p.relative_to(RECIPES_DIR).with_suffix("")) for p in RECIPES_DIR.glob("**/*.yaml"))


def resolve_recipe(name_or_path: str | Path) -> Path:
    """A path to an existing YAML file, or the name of a shipped recipe (e.g. "sft/chain_cot")."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = str(name_or_path)
    shipped = RECIPES_DIR / (name if name.endswith(".yaml") else name + ".yaml")
    if shipped.is_file():
        return shipped
    raise MentaleseError(f"recipe {name!r} not found; shipped recipes: {', '.join(list_recipes())}")


def recipe_values(path: str | Path) -> dict[str, Any]:
    """The recipe's config values: the YAML mapping without its `method:` key."""
    from mentalese.config import read_yaml

    values = read_yaml(path)
    values.pop(METHOD_KEY, None)
    return values


def declared_method(path: str | Path) -> str | None:
    """The recipe's `method:` key, else the method of the shipped folder it sits in, else None."""
    from mentalese.config import read_yaml

    method = read_yaml(path).get(METHOD_KEY)
    if method is not None:
        if not isinstance(method, str):
            raise MentaleseError(f"recipe {path}: `{METHOD_KEY}:` must be a name, got {method!r}")
        return method
    try:
        folder = Path(path).resolve().relative_to(RECIPES_DIR.resolve()).parts[0]
    except ValueError:  # not a shipped recipe
        return None
    return FOLDER_METHODS.get(folder)
