"""Models: loading any causal LM, special tokens, LoRA, and the tiny-model factory."""

from mentalese.models.loading import add_special_tokens, apply_lora, load_model_and_tokenizer
from mentalese.models.tiny import TINY_ARCHS, build_tiny_model, char_tokenizer, train_bpe_tokenizer

__all__ = [
    "add_special_tokens",
    "apply_lora",
    "load_model_and_tokenizer",
    "TINY_ARCHS",
    "build_tiny_model",
    "char_tokenizer",
    "train_bpe_tokenizer",
]
