"""Shipped recipes (YAML). `resolve_recipe("sft/chain_cot")` finds one by name."""

from __future__ import annotations

from pathlib import Path

from mentalese.errors import MentaleseError

RECIPES_DIR = Path(__file__).parent


def list_recipes() -> list[str]:
    return sorted(str(p.relative_to(RECIPES_DIR).with_suffix("")) for p in RECIPES_DIR.glob("**/*.yaml"))


def resolve_recipe(name_or_path: str) -> Path:
    """A path to an existing YAML file, or the name of a shipped recipe (e.g. "sft/chain_cot")."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = RECIPES_DIR / (name_or_path if name_or_path.endswith(".yaml") else name_or_path + ".yaml")
    if shipped.is_file():
        return shipped
    raise MentaleseError(f"recipe {name_or_path!r} not found; shipped recipes: {', '.join(list_recipes())}")
