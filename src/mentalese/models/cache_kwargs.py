"""The keyword a model call takes its KV cache under: `cache`, or `past_key_values` before the rename.

transformers renamed the forward argument `past_key_values` to `cache` (5.24, installed here, has
both): the old name still works but raises a FutureWarning ("will be removed in version 5.40.0",
`utils/deprecation.py`).
Every model call of the library passes its cache through `cache_kwargs(model, cache)`, which uses
the name the model's forward declares, so the same code runs before the rename, after it and after
the removal, and on remote-code models that kept the old name. Wrappers whose forward declares
neither (a PEFT model forwards **kwargs) are looked through (`get_base_model()`); failing that the
installed transformers' own name is used (the cache field of its causal-LM output). Decided once
per model class.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any

NEW_NAME, OLD_NAME = "cache", "past_key_values"


@functools.cache
def installed_cache_name() -> str:
    """`cache` if the installed transformers names the KV cache so (in its model outputs), else `past_key_values`."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return NEW_NAME if NEW_NAME in {f.name for f in dataclasses.fields(CausalLMOutputWithPast)} else OLD_NAME


@functools.cache
def cache_argument(model_class: type) -> str:
    """The cache keyword `model_class.forward` declares; the installed transformers' name if it declares neither."""
    params = inspect.signature(model_class.forward).parameters  # follows the deprecation wrapper's __wrapped__
    for name in (NEW_NAME, OLD_NAME):
        if name in params:
            return name
    return installed_cache_name()


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """`{name: cache}` to splat into a call of `model`, with the name its forward accepts."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT wrappers
    return {cache_argument(type(inner)): cache}
