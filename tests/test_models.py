"""Model loading, the tiny-model factory, tokenizers, special tokens and LoRA."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from mentalese.errors import MentaleseError
from mentalese.models import (
    TINY_ARCHS,
    add_special_tokens,
    apply_lora,
    build_tiny_model,
    char_tokenizer,
    load_model_and_tokenizer,
    train_bpe_tokenizer,
)
from mentalese.models.loading import LoraSettings, ensure_pad_token, load_tokenizer

ARCHS = ["gpt2", "llama", "qwen2", "qwen3"]
SEED = 3
TEXT = "Hi , there . x = 12 + 3 ?\n  (a) b;c: 3*4 / 5 - 6 #| <_>\nend 0987 \n"
FIXED_INPUT = torch.tensor([[5, 6, 7, 8, 9, 10, 40, 41], [12, 13, 14, 15, 16, 17, 18, 19]])


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_models")
    return {arch: build_tiny_model(arch, char_tokenizer(), root / arch, seed=SEED) for arch in ARCHS}


def load(path):
    return load_model_and_tokenizer(path, dtype="float32", device="cpu")


def test_tiny_archs_are_the_four():
    assert sorted(TINY_ARCHS) == sorted(ARCHS)


# --- tiny factory: save + from_pretrained -------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_model_reloads_with_identical_logits(model_paths, arch):
    """The saved model, reloaded through from_pretrained, equals the one the factory initialised."""
    path = model_paths[arch]
    model, tok = load(path)
    assert model.config.model_type == arch
    assert model.config.vocab_size == len(tok) == len(char_tokenizer())
    assert not model.training

    # rebuild the factory's in-memory model: same config, same seed
    torch.manual_seed(SEED)
    reference = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path)).eval()
    ref_state = reference.state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, ref_state[name]), name
    with torch.no_grad():
        assert torch.equal(model(FIXED_INPUT).logits, reference(FIXED_INPUT).logits)

    # and a second load gives the same logits again
    again, _ = load(path)
    with torch.no_grad():
        assert torch.equal(model(FIXED_INPUT).logits, again(FIXED_INPUT).logits)


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_model_special_ids_and_dtype(model_paths, arch):
    model, tok = load(model_paths[arch])
    assert model.dtype == torch.float32
    assert (tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token) == ("<pad>", "<s>", "</s>", "<unk>")
    assert model.config.eos_token_id == tok.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id


def test_tiny_seed_changes_weights(tmp_path):
    a = build_tiny_model("llama", char_tokenizer(), tmp_path / "a", seed=0)
    b = build_tiny_model("llama", char_tokenizer(), tmp_path / "b", seed=1)
    c = build_tiny_model("llama", char_tokenizer(), tmp_path / "c", seed=0)
    wa, wb, wc = (load(p)[0].get_input_embeddings().weight for p in (a, b, c))
    assert torch.equal(wa, wc) and not torch.equal(wa, wb)


def test_tiny_overrides_reach_the_config(tmp_path):
    path = build_tiny_model("qwen2", char_tokenizer(), tmp_path / "m", num_hidden_layers=1, hidden_size=64)
    model, _ = load(path)
    assert (model.config.num_hidden_layers, model.config.hidden_size) == (1, 64)


def test_unknown_tiny_arch(tmp_path):
    with pytest.raises(MentaleseError, match="mamba"):
        build_tiny_model("mamba", char_tokenizer(), tmp_path / "m")
    assert not (tmp_path / "m").exists()


# --- tokenizers ---------------------------------------------------------------------------


def test_char_tokenizer_round_trip():
    tok = char_tokenizer()
    ids = tok.encode(TEXT, add_special_tokens=False)
    assert len(ids) == len(TEXT)  # one token per character
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == TEXT
    assert tok.decode(tok(TEXT)["input_ids"], skip_special_tokens=True) == TEXT


def test_char_tokenizer_consecutive_newlines():
    tok = char_tokenizer()
    text = "line one\n\nline two\n\n\n3"
    ids = tok.encode(text, add_special_tokens=False)
    assert len(ids) == len(text)
    assert tok.decode(ids) == text


def test_char_tokenizer_specials_and_unknown_chars():
    tok = char_tokenizer()
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    assert tok.encode("a~b", add_special_tokens=False)[1] == tok.unk_token_id
    extra = char_tokenizer(extra_tokens=["<think>", "</think>"])
    ids = extra.encode("a<think>b</think>", add_special_tokens=False)
    assert ids == [extra.convert_tokens_to_ids(t) for t in ["a", "<think>", "b", "</think>"]]
    assert extra.decode(ids, skip_special_tokens=True) == "ab"


@pytest.mark.parametrize("arch", ARCHS)
def test_saved_tokenizer_round_trips(model_paths, arch):
    _, tok = load(model_paths[arch])
    original = char_tokenizer()
    assert tok(TEXT)["input_ids"] == original(TEXT)["input_ids"]
    assert tok.decode(tok(TEXT)["input_ids"]) == TEXT


def test_qwen2_tiny_tokenizer_loads_as_generic_fast(model_paths):
    """transformers 5 maps model_type qwen2 to Qwen2Tokenizer, whose pre-tokenisation drops our
    spaces; load_tokenizer must honour the saved generic class instead (see its docstring)."""
    tok = load_tokenizer(model_paths["qwen2"])
    assert type(tok).__name__ in ("TokenizersBackend", "PreTrainedTokenizerFast")
    assert tok(TEXT)["input_ids"] == char_tokenizer()(TEXT)["input_ids"]
    _, loaded_tok = load(model_paths["qwen2"])
    assert type(loaded_tok).__name__ == type(tok).__name__


SENTENCES = [
    "The cat sat on the mat.",
    "A dog ran in the park, then sat down.",
    "Numbers like 12 and 345 appear here.\nNew lines too.",
    "the the the cat cat dog",
]


def test_bpe_tokenizer_round_trip_and_size():
    tok = train_bpe_tokenizer(SENTENCES, vocab_size=300)
    assert len(tok) <= 300
    for s in SENTENCES + ["unseen wörds, émojis 🙂 and 9876\n\ttabs"]:
        assert tok.decode(tok.encode(s, add_special_tokens=False)) == s
    assert (tok.pad_token, tok.eos_token) == ("<pad>", "</s>")
    # merges were learnt: a frequent word is fewer tokens than characters
    assert len(tok.encode("the", add_special_tokens=False)) < 3


# --- special tokens -----------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_add_special_tokens_mean_init(model_paths, arch):
    model, tok = load(model_paths[arch])
    old_weight = model.get_input_embeddings().weight.detach().clone()
    old_vocab = old_weight.shape[0]
    ids = add_special_tokens(model, tok, ["<bot>", "<eot>"], init="mean")

    assert ids == [old_vocab, old_vocab + 1]
    assert ids == tok.convert_tokens_to_ids(["<bot>", "<eot>"])
    weight = model.get_input_embeddings().weight
    assert weight.shape == (old_vocab + 2, old_weight.shape[1])
    assert len(tok) == old_vocab + 2
    assert torch.equal(weight[:old_vocab], old_weight)  # old rows untouched
    mean = old_weight.sum(dim=0) / old_vocab  # by hand
    torch.testing.assert_close(weight[old_vocab], mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(weight[old_vocab + 1], mean, atol=1e-6, rtol=0)
    with torch.no_grad():
        logits = model(torch.tensor([[5, ids[0], 6, ids[1]]])).logits
    assert logits.shape[-1] == old_vocab + 2 and torch.isfinite(logits).all()
    # the tokens are atomic and skipped as special
    assert tok.encode("a<bot>b", add_special_tokens=False) == [tok.convert_tokens_to_ids("a"), ids[0],
                                                              tok.convert_tokens_to_ids("b")]
    assert tok.decode(tok.encode("a<bot>b", add_special_tokens=False), skip_special_tokens=True) == "ab"

    # idempotent: adding the same tokens again changes nothing
    again = add_special_tokens(model, tok, ["<bot>", "<eot>"], init="mean")
    assert again == ids
    assert model.get_input_embeddings().weight.shape[0] == old_vocab + 2 and len(tok) == old_vocab + 2
    assert torch.equal(model.get_input_embeddings().weight, weight)


def test_add_special_tokens_untied_head_mean_init(tmp_path):
    path = build_tiny_model("llama", char_tokenizer(), tmp_path / "untied", seed=SEED, tie_word_embeddings=False)
    model, tok = load(path)
    head_old = model.get_output_embeddings().weight.detach().clone()
    emb_old = model.get_input_embeddings().weight.detach().clone()
    assert not torch.equal(head_old, emb_old)
    (new_id,) = add_special_tokens(model, tok, ["<x>"], init="mean")
    torch.testing.assert_close(model.get_output_embeddings().weight[new_id], head_old.mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(model.get_input_embeddings().weight[new_id], emb_old.mean(0), atol=1e-6, rtol=0)


def test_add_special_tokens_partly_present(model_paths):
    model, tok = load(model_paths["qwen3"])
    old_vocab = len(tok)
    first = add_special_tokens(model, tok, ["<a>"])
    both = add_special_tokens(model, tok, ["<a>", "<b>"])
    assert both == [first[0], old_vocab + 1]
    assert model.get_input_embeddings().weight.shape[0] == old_vocab + 2
    assert {"<a>", "<b>"} <= set(tok.all_special_tokens)


@pytest.mark.parametrize("init", ["hf", "normal"])
def test_add_special_tokens_other_inits(model_paths, init):
    model, tok = load(model_paths["llama"])
    torch.manual_seed(0)
    old = model.get_input_embeddings().weight.detach().clone()
    ids = add_special_tokens(model, tok, ["<p>", "<q>"], init=init)
    weight = model.get_input_embeddings().weight
    assert torch.equal(weight[: old.shape[0]], old)
    assert torch.isfinite(weight[ids]).all()
    if init == "normal":
        assert not torch.equal(weight[ids[0]], weight[ids[1]])  # random, unlike "mean"
        assert weight[ids].abs().max() <= 3 * weight.shape[1] ** -0.5 + 1e-6


def test_add_special_tokens_bad_init(model_paths):
    model, tok = load(model_paths["llama"])
    with pytest.raises(MentaleseError, match="init"):
        add_special_tokens(model, tok, ["<p>"], init="zeros")
    assert len(tok) == model.get_input_embeddings().weight.shape[0]  # nothing was added


def test_load_with_special_tokens(model_paths):
    model, tok = load_model_and_tokenizer(model_paths["gpt2"], dtype="float32", device="cpu",
                                          special_tokens=["<bot>"])
    bot = tok.convert_tokens_to_ids("<bot>")
    assert bot == len(char_tokenizer())
    assert model.get_input_embeddings().weight.shape[0] == len(tok)


# --- LoRA ------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_apply_lora(model_paths, arch):
    from peft import PeftModel

    model, _ = load(model_paths[arch])
    with torch.no_grad():
        base_logits = model(FIXED_INPUT).logits
    lora = apply_lora(model, LoraSettings(r=4))
    assert isinstance(lora, PeftModel)
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable, "LoRA added no trainable parameters"
    assert all("lora_" in n for n in trainable), [n for n in trainable if "lora_" not in n]
    assert any(p.shape[0] == 4 for n, p in lora.named_parameters() if "lora_A" in n)
    lora.eval()
    with torch.no_grad():
        torch.testing.assert_close(lora(input_ids=FIXED_INPUT).logits, base_logits, atol=1e-6, rtol=0)


def test_apply_lora_bad_rank(model_paths):
    model, _ = load(model_paths["llama"])
    with pytest.raises(MentaleseError, match="r"):
        apply_lora(model, LoraSettings(r=0))


# --- errors ----------------------------------------------------------------------------------


def test_unknown_dtype(model_paths):
    with pytest.raises(MentaleseError, match="float8"):
        load_model_and_tokenizer(model_paths["gpt2"], dtype="float8", device="cpu")


def test_missing_model_path(tmp_path):
    missing = tmp_path / "does_not_exist"
    with pytest.raises(MentaleseError, match="does_not_exist"):
        load_model_and_tokenizer(missing, dtype="float32", device="cpu")




@pytest.mark.parametrize("contents", ["empty", "tokenizer only"])
def test_directory_without_model(tmp_path, contents):
    if contents == "tokenizer only":
        char_tokenizer().save_pretrained(tmp_path)  # a tokenizer, but no config/weights
    with pytest.raises(MentaleseError, match="cannot load model"):
        load_model_and_tokenizer(tmp_path, dtype="float32", device="cpu")


def test_unknown_device():
    from mentalese.models.loading import resolve_device

    with pytest.raises(MentaleseError, match="device"):
        resolve_device("tpu:zero")


def test_ensure_pad_token_policies():
    tok = char_tokenizer()
    no_pad = copy.deepcopy(tok)
    no_pad.pad_token = None
    assert no_pad.pad_token_id is None

    strict = copy.deepcopy(no_pad)
    with pytest.raises(MentaleseError, match="pad"):
        ensure_pad_token(strict, policy="error")
    assert strict.pad_token_id is None

    lenient = copy.deepcopy(no_pad)
    ensure_pad_token(lenient, policy="eos")
    assert lenient.pad_token_id == lenient.eos_token_id

    ensure_pad_token(tok, policy="error")  # already has one: nothing to do
    assert tok.pad_token_id == 0


def test_ensure_pad_token_without_eos():
    tok = copy.deepcopy(char_tokenizer())
    tok.pad_token = None
    tok.eos_token = None
    with pytest.raises(MentaleseError, match="pad"):
        ensure_pad_token(tok, policy="eos")
