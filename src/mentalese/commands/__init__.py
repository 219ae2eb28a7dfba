"""The commands layer: the CLI (`cli.py`), the demos (`demo/`) and the benchmarks (`bench/`).

Library code (`methods/`, `decoding/`, `evaluation/`, `analysis/`) never imports from here. Every
verb that takes `key=value` overrides is a `Command`: the config dataclass the overrides fill (its
field metadata "help" texts are what `mentalese <verb> --help` shows) and the function that runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Command:
    config: type  # a dataclass; `mentalese.config.load_config(config, recipe, overrides)` builds it
    run: Callable[[Any], Any]  # takes the built config
    help: str  # one line for `mentalese <verb> --help`
