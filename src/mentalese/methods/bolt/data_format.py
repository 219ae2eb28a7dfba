"""BoLT's data format: special tokens, sentence chunks, per-chunk layouts, packing.

A document is split into chunks of whole sentences. Chunk lengths are Poisson(mean)+1 sentences
capped at `cap`, drawn from a generator seeded by a SHA-256 of the document text, so the
boundaries are the same in every EM iteration and every process (Python's `hash()` is salted per
process and would not be). The chunks concatenate back to the exact document text.

Each chunk X with a thought Z is laid out in one of two orders (token ids, no string joining):

    prior     (p(Z, X)):  SOL <|prior|> Z EOL X
    posterior (q(Z | X)): SOL EOL X SOL <|posterior|> Z EOL

A chunk without a thought (None) is written raw: X. A document is BOS + chunks + EOS; documents
are concatenated and cut into fixed-length sequences; the loss is on every token.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from dataclasses import dataclass
from typing import Sequence

from mentalese.errors import MentaleseError

SOL = "<|start_of_latent|>"
EOL = "<|end_of_latent|>"
PRIOR = "<|prior|>"
POSTERIOR = "<|posterior|>"
BOLT_TOKENS = [SOL, EOL, PRIOR, POSTERIOR]

# a sentence ends at . ! or ? followed by whitespace; the whitespace stays with the sentence before
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class BoltTokenIds:
    sol: int
    eol: int
    prior: int
    posterior: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "BoltTokenIds":
        ids = tokenizer.convert_tokens_to_ids(BOLT_TOKENS)
        if any(i is None or i == tokenizer.unk_token_id for i in ids):
            raise MentaleseError(f"tokenizer lacks the BoLT tokens {BOLT_TOKENS}; call add_bolt_tokens first")
        return cls(*ids)


@dataclass(frozen=True)
class Chunk:
    doc_id: str
    index: int  # position within its document
    text: str

    @property
    def chunk_id(self) -> str:
        return f"{self.doc_id}#{self.index}"


def add_bolt_tokens(model, tokenizer) -> BoltTokenIds:
    """Add the four tokens; new rows ~ N(0, d^-1/2) clamped at 3 sigma (the paper's initialisation)."""
    from mentalese.models.loading import add_special_tokens

    add_special_tokens(model, tokenizer, BOLT_TOKENS, init="normal")
    return BoltTokenIds.from_tokenizer(tokenizer)


def text_seed(text: str) -> int:
    """A seed that depends only on the text (stable across processes and Python versions)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def split_sentences(text: str) -> list[str]:
    """Sentences with their trailing whitespace; ''.join(result) == text. No boundary -> one sentence."""
    pieces, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        pieces.append(text[start:m.end()])
        start = m.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def poisson(rng: random.Random, mean: float) -> int:
    """Knuth's Poisson sampler (small means), driven by a `random.Random`."""
    if mean <= 0:
        return 0
    limit, k, prod = math.exp(-mean), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k


def chunk_lengths(num_sentences: int, seed: int, mean: float = 7.0, cap: int = 20) -> list[int]:
    """Sentences per chunk: Poisson(mean)+1 capped at `cap`, until the document is covered."""
    if cap < 1:
        raise MentaleseError(f"chunk cap must be >= 1, got {cap}")
    rng, lengths, covered = random.Random(seed), [], 0
    while covered < num_sentences:
        n = min(poisson(rng, mean) + 1, cap, num_sentences - covered)
        lengths.append(n)
        covered += n
    return lengths


def chunk_document(doc_id: str, text: str, mean: float = 7.0, cap: int = 20) -> list[Chunk]:
    if not text.strip():
        raise MentaleseError(f"document {doc_id!r} is empty")
    sentences = split_sentences(text)
    chunks, pos = [], 0
    for i, n in enumerate(chunk_lengths(len(sentences), text_seed(text), mean, cap)):
        chunks.append(Chunk(doc_id, i, "".join(sentences[pos:pos + n])))
        pos += n
    assert "".join(c.text for c in chunks) == text  # chunking never changes the corpus
    return chunks


def chunk_corpus(documents: Sequence[tuple[str, str]], mean: float = 7.0, cap: int = 20) -> tuple[list[list[Chunk]], int]:
    """Chunk (doc_id, text) pairs; empty documents are skipped and counted (second value)."""
    out, skipped = [], 0
    for doc_id, text in documents:
        if not text.strip():
            skipped += 1
            continue
        out.append(chunk_document(doc_id, text, mean, cap))
    return out, skipped


def choose_order(chunk: Chunk, prior_probability: float, seed: int) -> str:
    """'prior' or 'posterior', a deterministic coin per (chunk, seed)."""
    if not 0 <= prior_probability <= 1:
        raise MentaleseError(f"prior_probability must be in [0, 1], got {prior_probability}")
    rng = random.Random(text_seed(f"{seed}|{chunk.chunk_id}|{chunk.text}"))
    return "prior" if rng.random() < prior_probability else "posterior"


def chunk_ids(x_ids: list[int], z_ids: list[int] | None, order: str, tok: BoltTokenIds) -> list[int]:
    """Token ids of one chunk in its layout (raw when z_ids is None)."""
    if z_ids is None:
        return list(x_ids)
    if order == "prior":
        return [tok.sol, tok.prior, *z_ids, tok.eol, *x_ids]
    if order == "posterior":
        return [tok.sol, tok.eol, *x_ids, tok.sol, tok.posterior, *z_ids, tok.eol]
    raise MentaleseError(f"order must be prior or posterior, got {order!r}")


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def document_ids(tokenizer, chunks: Sequence[Chunk], thoughts: dict[str, str], prior_probability: float,
                 seed: int, tok: BoltTokenIds) -> list[int]:
    """BOS + every chunk in its layout + EOS. `thoughts` maps chunk_id -> thought text (absent = raw)."""
    ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    for c in chunks:
        z = thoughts.get(c.chunk_id)
        z_ids = None if z is None else encode(tokenizer, z)
        ids += chunk_ids(encode(tokenizer, c.text), z_ids, choose_order(c, prior_probability, seed), tok)
    if tokenizer.eos_token_id is None:
        raise MentaleseError("tokenizer has no eos token; BoLT documents end with eos")
    return ids + [tokenizer.eos_token_id]


def pack_sequences(documents: Sequence[list[int]], seq_len: int, pad_id: int) -> list[dict[str, list[int]]]:
    """Concatenate documents and cut into `seq_len` blocks; the last block is padded (pads get label -100)."""
    if seq_len < 2:
        raise MentaleseError(f"seq_len must be >= 2, got {seq_len}")
    stream = [t for doc in documents for t in doc]
    if not stream:
        raise MentaleseError("nothing to pack: the corpus is empty")
    rows = []
    for start in range(0, len(stream), seq_len):
        block = stream[start:start + seq_len]
        n_pad = seq_len - len(block)
        rows.append({"input_ids": block + [pad_id] * n_pad, "attention_mask": [1] * len(block) + [0] * n_pad,
                     "labels": block + [-100] * n_pad})
    return rows
