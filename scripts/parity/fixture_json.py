"""Write a parity fixture as JSON with every list of numbers on one line (readable diffs, small files)."""

from __future__ import annotations

import json
from pathlib import Path


def _dump(obj, indent: int) -> str:
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict):
        items = [f"{inner}{json.dumps(k)}: {_dump(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}" if items else "{}"
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        return "[\n" + ",\n".join(inner + _dump(v, indent + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj)  # scalars and flat lists: floats as repr, exact


def write_fixture(path: Path, fixture: dict) -> None:
    path.write_text(_dump(fixture, 0) + "\n")
    assert json.loads(path.read_text()) == fixture
