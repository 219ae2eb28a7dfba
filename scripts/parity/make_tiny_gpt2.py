"""Write the fixed tiny GPT-2 + word-level tokenizer that both parity fixtures use.

    tests/data/parity/tiny_gpt2/   config.json, model.safetensors, tokenizer.json, tokenizer_config.json, ...

Run it in the Coconut official env (transformers 4.46.2, so that the older 4.43 of the iCoT env and our
5.x both read the files; see coconut_official.py for the env):

    /work/official_envs/coconut/bin/python scripts/parity/make_tiny_gpt2.py

The vocabulary is 32 whole words split on whitespace: digits, a few operators, the Coconut markers
<|start-latent|>, <|end-latent|>, <|latent|> and GPT-2's <|endoftext|> (id 0, eos/bos; Coconut and
iCoT both pad with it). Dropout is 0, so train and eval forwards are the same function, and the
weights are drawn with a large initializer_range (0.3): with GPT-2's 0.02 every logit is ~uniform and
a wrong latent feedback or position id would barely move the loss.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "parity" / "tiny_gpt2"
EOS = "<|endoftext|>"
WORDS = [EOS, *"0123456789", "+", "*", "=", "(", ")", "###", "####", "<<", ">>", *"abcdefgh", "<unk>",
         "<|start-latent|>", "<|end-latent|>", "<|latent|>"]
SEED = 20261203


def main(out: Path = OUT) -> None:
    assert len(WORDS) == 32 and len(set(WORDS)) == 32
    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token="<unk>")

    torch.manual_seed(SEED)
    config = GPT2Config(vocab_size=32, n_positions=64, n_embd=32, n_layer=2, n_head=2, initializer_range=0.3,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
