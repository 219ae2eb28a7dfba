"""BoLT data format: tokens and their initialisation, seeded chunking, layouts, packing."""

import pytest
import torch

from mentalese.errors import MentaleseError
from mentalese.methods.bolt.data_format import (
    BOLT_TOKENS, BoltTokenIds, Chunk, add_bolt_tokens, choose_order, chunk_corpus, chunk_document, chunk_ids,
    chunk_lengths, document_ids, pack_sequences, split_sentences, text_seed,
)
from mentalese.models.loading import load_model_and_tokenizer
from mentalese.models.tiny import build_tiny_model, char_tokenizer

DOC = " ".join(f"Sentence number {i} is here." for i in range(40))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_tiny_model("llama", char_tokenizer(), tmp_path_factory.mktemp("m"), tie_word_embeddings=False)
    model, tok = load_model_and_tokenizer(path, dtype="float32", device="cpu")
    old = model.get_input_embeddings().weight.shape[0]
    torch.manual_seed(0)
    ids = add_bolt_tokens(model, tok)
    return model, tok, ids, old


def test_tokens_added_with_clamped_normal_init(tiny):
    model, tok, ids, old = tiny
    assert tok.convert_ids_to_tokens([ids.sol, ids.eol, ids.prior, ids.posterior]) == BOLT_TOKENS
    d = model.config.hidden_size
    for w in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
        new = w[old:].detach()
        assert new.shape[0] == 4
        assert new.abs().max() <= 3 * d ** -0.5 + 1e-6
        assert 0.5 * d ** -0.5 < new.std() < 1.5 * d ** -0.5
    assert tok.decode([ids.sol, tok.convert_tokens_to_ids("a")], skip_special_tokens=True) == "a"


def test_missing_tokens_are_an_error():
    with pytest.raises(MentaleseError, match="add_bolt_tokens"):
        BoltTokenIds.from_tokenizer(char_tokenizer())


def test_sentences_round_trip_and_no_boundary():
    assert split_sentences("A b. C d? E!  F") == ["A b. ", "C d? ", "E!  ", "F"]
    assert split_sentences("no boundary at all") == ["no boundary at all"]
    assert split_sentences("3.14 is pi.") == ["3.14 is pi."]


def test_chunking_is_seeded_by_text_and_lossless():
    chunks = chunk_document("d", DOC)
    assert "".join(c.text for c in chunks) == DOC
    assert [c.text for c in chunk_document("other-id", DOC)] == [c.text for c in chunks]  # same text, same cut
    lengths = chunk_lengths(40, text_seed(DOC))
    assert sum(lengths) == 40 and all(1 <= n <= 20 for n in lengths)
    assert text_seed("abc") == 0xBA7816BF8F01CFEA  # first 8 bytes of sha256("abc"): stable across processes


def test_chunk_lengths_statistics_and_cap():
    lengths = [n for s in range(300) for n in chunk_lengths(10_000, s)[:-1]]
    assert 7.6 < sum(lengths) / len(lengths) < 8.4  # Poisson(7) + 1
    assert max(chunk_lengths(1000, 1, mean=30, cap=20)) == 20
    assert chunk_lengths(5, 0, mean=0, cap=20) == [1] * 5


def test_empty_documents_counted_or_rejected():
    docs, skipped = chunk_corpus([("a", "One. Two."), ("b", "  "), ("c", "")])
    assert len(docs) == 1 and skipped == 2
    with pytest.raises(MentaleseError, match="empty"):
        chunk_document("b", " \n")


def test_layouts():
    ids = BoltTokenIds(sol=1, eol=2, prior=3, posterior=4)
    assert chunk_ids([10, 11], [20], "prior", ids) == [1, 3, 20, 2, 10, 11]
    assert chunk_ids([10, 11], [20], "posterior", ids) == [1, 2, 10, 11, 1, 4, 20, 2]
    assert chunk_ids([10, 11], None, "prior", ids) == [10, 11]
    with pytest.raises(MentaleseError):
        chunk_ids([1], [2], "sideways", ids)


def test_order_probability():
    chunks = [Chunk("d", i, f"text {i}.") for i in range(2000)]
    share = sum(choose_order(c, 0.5, 0) == "prior" for c in chunks) / len(chunks)
    assert 0.45 < share < 0.55
    assert all(choose_order(c, 1.0, 0) == "prior" for c in chunks[:50])
    assert [choose_order(c, 0.5, 3) for c in chunks[:50]] == [choose_order(c, 0.5, 3) for c in chunks[:50]]


def test_document_ids_and_packing(tiny):
    _, tok, ids, _ = tiny
    chunks = chunk_document("d", "Ab. Cd.", mean=0, cap=1)
    doc = document_ids(tok, chunks, {"d#1": "z"}, 1.0, 0, ids)
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert doc == [tok.bos_token_id, *enc("Ab. "), ids.sol, ids.prior, *enc("z"), ids.eol, *enc("Cd."), tok.eos_token_id]
    raw = document_ids(tok, chunks, {}, 0.5, 0, ids)
    assert raw == [tok.bos_token_id, *enc("Ab. Cd."), tok.eos_token_id]
    rows = pack_sequences([doc, raw], 8, tok.pad_token_id)
    stream = doc + raw
    assert all(len(r["input_ids"]) == 8 for r in rows)
    assert [t for r in rows for t, m in zip(r["input_ids"], r["attention_mask"]) if m] == stream
    assert rows[-1]["labels"][-1] == -100 and rows[0]["labels"] == rows[0]["input_ids"]
    with pytest.raises(MentaleseError):
        pack_sequences([], 8, 0)
