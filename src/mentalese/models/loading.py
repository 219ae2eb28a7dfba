"""Load any `AutoModelForCausalLM` + tokenizer, add special tokens, wrap with LoRA.

New special-token rows (`add_special_tokens`) are initialised by `init`:
- "mean"   (default): every new input-embedding row (and lm_head row when untied) is the mean of
           the existing rows: a neutral start that does not perturb the output distribution much.
- "hf":    transformers' `mean_resizing`: rows sampled from N(mean, covariance) of the old rows
           (transformers falls back to the plain mean when the covariance is not positive definite,
           e.g. whenever the vocabulary is smaller than the hidden size).
- "normal": N(0, std^2) clamped at 3 std, std = hidden_size ** -0.5 (BoLT's initialisation).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from mentalese.errors import MentaleseError

log = logging.getLogger(__name__)
_GENERIC_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise MentaleseError(f"unknown device {device!r}") from None


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":  # bf16 on GPUs that support it, fp32 elsewhere
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if dtype not in _DTYPES:
        raise MentaleseError(f"unknown dtype {dtype!r}; choose auto or one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase, policy: str = "eos") -> None:
    """Give the tokenizer a pad token if it lacks one: reuse eos ("eos") or refuse ("error")."""
    if tokenizer.pad_token_id is not None:
        return
    if policy == "eos" and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
        log.info("tokenizer has no pad token: using eos %r as pad", tokenizer.eos_token)
        return
    raise MentaleseError("tokenizer has no pad token (and no eos to reuse); set tokenizer.pad_token first")


_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def refuse_pickle_only_weights(name_or_path: str | Path) -> None:
    """A local model directory with pickle weights and no safetensors is refused (unpickling can run code)."""
    path = Path(name_or_path)
    if not path.is_dir() or any(path.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    if pickles:
        raise MentaleseError(f"model {str(path)!r} has only pickle weights ({', '.join(pickles)}), no .safetensors; "
                             "re-save it with save_pretrained() or pass allow_pickle_weights=True")


def load_tokenizer(name_or_path: str | Path, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """`AutoTokenizer`, except that a locally saved generic fast tokenizer loads as itself.

    transformers 5 swaps in the model type's registered tokenizer class for some architectures
    (Qwen2) even when tokenizer_config.json names the generic backend; for tokenizers built with
    `tokenizers` (ours) that silently changes the tokenisation, so we honour the saved class.
    """
    cfg = Path(name_or_path) / "tokenizer_config.json"
    if cfg.is_file() and json.loads(cfg.read_text()).get("tokenizer_class") in _GENERIC_TOKENIZERS:
        return PreTrainedTokenizerFast.from_pretrained(name_or_path)
    return AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)


def load_model_and_tokenizer(
    name_or_path: str | Path,
    dtype: str = "auto",
    device: str = "auto",
    special_tokens: list[str] | None = None,
    special_token_init: str = "mean",
    pad_token: str = "eos",
    trust_remote_code: bool = False,
    allow_pickle_weights: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer by hub name or local path, on `device` in `dtype`.

    Safe by default: the repository's own Python code runs only when `trust_remote_code` is set, and
    weights load from safetensors only; `allow_pickle_weights=True` also accepts `pytorch_model.bin`
    (transformers then unpickles it with torch's restricted `weights_only=True` loader).
    """
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    if not allow_pickle_weights:
        refuse_pickle_only_weights(name_or_path)
    try:
        tokenizer = load_tokenizer(name_or_path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch_dtype, trust_remote_code=trust_remote_code,
                                                     use_safetensors=None if allow_pickle_weights else True)
    except (OSError, ValueError) as e:
        raise MentaleseError(f"cannot load model {str(name_or_path)!r}: {str(e).splitlines()[0]}") from None
    ensure_pad_token(tokenizer, pad_token)
    if special_tokens:
        add_special_tokens(model, tokenizer, special_tokens, init=special_token_init)
    model.to(dev)
    return model, tokenizer


def add_special_tokens(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, tokens: list[str], init: str = "mean"
) -> list[int]:
    """Add `tokens` as special tokens (skipping ones already present), resize, initialise new rows."""
    if init not in ("mean", "hf", "normal"):
        raise MentaleseError(f"special_token_init must be mean, hf or normal, got {init!r}")
    old_vocab = model.get_input_embeddings().weight.shape[0]
    tokenizer.add_special_tokens({"additional_special_tokens": list(tokens)}, replace_extra_special_tokens=False)
    new_size = max(len(tokenizer), old_vocab)
    if new_size > old_vocab:
        model.resize_token_embeddings(new_size, mean_resizing=(init == "hf"))
        if init != "hf":
            _init_new_rows(model, old_vocab, init)
    return tokenizer.convert_tokens_to_ids(list(tokens))


@torch.no_grad()
def _init_new_rows(model: PreTrainedModel, start: int, init: str) -> None:
    tables = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight.data_ptr() != tables[0].data_ptr():
        tables.append(out.weight)
    for w in tables:
        if init == "mean":
            w[start:] = w[:start].mean(dim=0, keepdim=True)
        else:
            std = w.shape[1] ** -0.5
            w[start:] = torch.randn_like(w[start:]).mul_(std).clamp_(-3 * std, 3 * std)


@dataclass
class LoraSettings:
    """LoRA through PEFT. `target_modules` "all-linear" lets PEFT pick every linear layer but the head."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] | str = "all-linear"
    modules_to_save: list[str] = field(default_factory=list)


def apply_lora(model: PreTrainedModel, settings: LoraSettings):
    from peft import LoraConfig, get_peft_model

    if settings.r < 1:
        raise MentaleseError(f"lora r must be >= 1, got {settings.r}")
    cfg = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        modules_to_save=settings.modules_to_save or None,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, cfg)
