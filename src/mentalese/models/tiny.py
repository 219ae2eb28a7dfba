"""Tiny random models with real tokenizers, for tests and the toy task.

`build_tiny_model(arch, tokenizer, out_dir)` writes a randomly initialised GPT-2, Llama, Qwen2 or
Qwen3 model (2 layers, small width) and its tokenizer with `save_pretrained`, so callers load it
back through the same `from_pretrained` path a hub model takes.

Tokenizers: `char_tokenizer()` (one token per character; the synthetic task) and
`train_bpe_tokenizer(texts)` (a byte-level BPE trained locally with `tokenizers`; natural language).
Both are `PreTrainedTokenizerFast` with pad/bos/eos/unk tokens.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Iterable

from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from mentalese.errors import MentaleseError

SPECIAL = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
CHARSET = string.ascii_letters + string.digits + " \n=+-*/;:?.,()<>#|_"

TINY_ARCHS = {
    # model_type -> config overrides (vocab size, special ids and widths are filled in below)
    "gpt2": dict(n_layer=2, n_head=4, n_embd=128, n_positions=512, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0),
    "llama": dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=128,
                  intermediate_size=256, max_position_embeddings=512, tie_word_embeddings=True),
    "qwen2": dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=128,
                  intermediate_size=256, max_position_embeddings=512, tie_word_embeddings=True),
    "qwen3": dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=128, head_dim=32,
                  intermediate_size=256, max_position_embeddings=512, tie_word_embeddings=True),
}


def tiny_size_overrides(arch: str, width: int, layers: int, heads: int | None = None) -> dict:
    """Config overrides that resize a tiny model (benchmarks). With `heads`, heads of width 64 and a
    4x MLP are set too; without, the architecture's tiny head layout is kept."""
    if arch == "gpt2":
        return {"n_embd": width, "n_layer": layers, **({"n_head": heads} if heads else {})}
    sizes = {"hidden_size": width, "num_hidden_layers": layers}
    if heads:
        sizes.update(num_attention_heads=heads, num_key_value_heads=heads, intermediate_size=4 * width, head_dim=64)
    return sizes


def char_tokenizer(charset: str = CHARSET, extra_tokens: Iterable[str] = ()) -> PreTrainedTokenizerFast:
    """A character-level tokenizer: special tokens, then every character of `charset`."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    specials = list(SPECIAL.values()) + [t for t in extra_tokens if t not in SPECIAL.values()]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in charset:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)
    fast.add_special_tokens({"additional_special_tokens": specials[len(SPECIAL):]} if extra_tokens else {})
    return fast


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained locally on `texts` (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)


def build_tiny_model(
    arch: str,
    tokenizer: PreTrainedTokenizerFast,
    out_dir: str | Path,
    seed: int = 0,
    **overrides,
) -> Path:
    """Create a random tiny `arch` model for `tokenizer`, save model + tokenizer to `out_dir`."""
    import torch

    if arch not in TINY_ARCHS:
        raise MentaleseError(f"unknown tiny architecture {arch!r}; choose from {sorted(TINY_ARCHS)}")
    kwargs = {**TINY_ARCHS[arch], **overrides}
    config = AutoConfig.for_model(
        arch,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **kwargs,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


TINY_PREFIX = "tiny-"


def resolve_base_model(name_or_path: str, output_dir: str | Path, seed: int = 0, tiny_options: dict | None = None) -> str:
    """The hub name/path to load; 'tiny-<arch>' builds a random tiny model once in output_dir/init_model."""
    if not name_or_path.startswith(TINY_PREFIX):
        return name_or_path
    init_dir = Path(output_dir) / "init_model"
    if not (init_dir / "config.json").exists():
        build_tiny_model(name_or_path[len(TINY_PREFIX):], char_tokenizer(), init_dir, seed=seed, **(tiny_options or {}))
    return str(init_dir.resolve())
