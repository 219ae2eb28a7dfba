"""transformers forward compatibility: the KV cache goes under the keyword the model declares.

transformers 5.24 takes it as `cache` and warns on `past_key_values` (removed in 5.40); a model
written before the rename takes only `past_key_values`. Our model calls (decode loop, CODI's
student, the single-thread probe) must warn about neither, and the test configuration must turn
such deprecations into failures (pyproject filterwarnings, conftest).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache, GPT2Config, GPT2LMHeadModel

from mentalese.analysis.single_thread import probe_soft_thinking
from mentalese.decoding import DecodeConfig, decode
from mentalese.decoding.soft_thinking import SoftThinkingConfig
from mentalese.methods.codi.loss import run_student
from mentalese.models import TINY_ARCHS, char_tokenizer
from mentalese.models.cache_kwargs import cache_argument, cache_kwargs, installed_cache_name

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest

PROMPTS = ["x = 12 + 3 ?", "ab", "The quick fox<think>"]


def tiny_config(tok) -> GPT2Config:
    return GPT2Config(vocab_size=len(tok), n_layer=2, n_head=4, n_embd=32, n_positions=128,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)


class OldNameGPT2(GPT2LMHeadModel):
    """A model written before the rename (or remote code that kept the name): only `past_key_values`."""

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None, position_ids=None,
                inputs_embeds=None, use_cache=None, output_hidden_states=None, logits_to_keep=0):
        return super().forward(input_ids=input_ids, cache=past_key_values, attention_mask=attention_mask,
                               position_ids=position_ids, inputs_embeds=inputs_embeds, use_cache=use_cache,
                               output_hidden_states=output_hidden_states, logits_to_keep=logits_to_keep)


class KwargsOnly(torch.nn.Module):
    def forward(self, **kwargs):
        return kwargs


@pytest.fixture(scope="module")
def mt():
    tok = char_tokenizer(extra_tokens=["<think>", "</think>"])
    torch.manual_seed(0)
    return GPT2LMHeadModel(tiny_config(tok)).eval(), tok


def cache_warnings(record):
    return [str(w.message) for w in record if "past_key_values" in str(w.message) or "cache" in str(w.message)]


# --- the keyword ---------------------------------------------------------------------------


@pytest.mark.parametrize("arch", sorted(TINY_ARCHS))
def test_installed_transformers_models_take_cache(arch):
    config = AutoConfig.for_model(arch, **TINY_ARCHS[arch], vocab_size=40)
    model_class = type(AutoModelForCausalLM.from_config(config))
    assert installed_cache_name() == "cache"  # pyproject requires transformers >= 5.24
    assert cache_argument(model_class) == "cache"


def test_old_name_models_and_wrappers():
    cache = object()
    assert cache_kwargs(OldNameGPT2.__new__(OldNameGPT2), cache) == {"past_key_values": cache}
    assert cache_kwargs(KwargsOnly(), cache) == {installed_cache_name(): cache}


def test_lora_wrapper_is_looked_through(mt):
    from peft import LoraConfig, get_peft_model

    model, tok = mt
    base = GPT2LMHeadModel(tiny_config(tok)).eval()
    base.load_state_dict(model.state_dict())
    lora_config = LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True, task_type="CAUSAL_LM")
    lora = get_peft_model(base, lora_config).eval()
    cache = object()
    assert cache_kwargs(lora, cache) == {"cache": cache}
    cfg = DecodeConfig(max_new_tokens=10, batch_size=len(PROMPTS))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        got = [r.token_ids for r in decode(lora, tok, PROMPTS, cfg)]
    assert cache_warnings(record) == []
    assert got == [r.token_ids for r in decode(model, tok, PROMPTS, cfg)]  # LoRA starts as the identity


def test_decode_on_an_old_name_model_uses_its_cache(mt):
    """Same weights under `past_key_values`: the same tokens (a dropped cache would change every step)."""
    model, tok = mt
    old = OldNameGPT2(tiny_config(tok)).eval()
    old.load_state_dict(model.state_dict())
    cfg = DecodeConfig(max_new_tokens=10, batch_size=len(PROMPTS))
    expected = [r.token_ids for r in decode(model, tok, PROMPTS, cfg)]
    assert [r.token_ids for r in decode(old, tok, PROMPTS, cfg)] == expected


# --- our model calls warn about nothing ------------------------------------------------------


def call_decode(model, tok):
    decode(model, tok, PROMPTS, DecodeConfig(max_new_tokens=4, batch_size=2, do_sample=True))


def call_codi_student(model, tok):
    ids = torch.tensor([tok("12+3")["input_ids"], tok("7*2")["input_ids"] + [tok.pad_token_id]])
    mask = (ids != tok.pad_token_id).long()
    dec = torch.tensor([tok("=15")["input_ids"], tok("=14")["input_ids"]])
    batch = {"student_ids": ids, "student_mask": mask, "decoder_ids": dec, "decoder_mask": torch.ones_like(dec)}
    run_student(model, None, batch, num_latent=2)


def call_probe(model, tok):
    probe_soft_thinking(model, tok("a<think>")["input_ids"], SoftThinkingConfig(), stop_ids=[], max_steps=3)


@pytest.mark.parametrize("call", [call_decode, call_codi_student, call_probe])
def test_model_calls_raise_no_deprecation(mt, call):
    model, tok = mt
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        call(model, tok)
    assert cache_warnings(record) == []
    assert [w for w in record if issubclass(w.category, (DeprecationWarning, FutureWarning))] == []


# --- the test configuration fails deprecated calls -------------------------------------------


def test_the_deprecated_cache_keyword_fails_a_test(mt):
    model, tok = mt
    with pytest.raises(FutureWarning, match="past_key_values"):  # pyproject: filterwarnings
        model(input_ids=torch.tensor([[5, 6]]), past_key_values=DynamicCache(config=model.config), use_cache=True)


def test_reading_the_old_output_name_fails_a_test(mt):
    model, tok = mt
    out = model(input_ids=torch.tensor([[5, 6]]), **cache_kwargs(model, DynamicCache(config=model.config)),
                use_cache=True)
    for _ in range(2):  # every time, not only the first (transformers logs it once per process)
        with pytest.raises(FutureWarning, match="past_key_values"):  # conftest: old_cache_name_is_an_error
            out.past_key_values


@pytest.mark.parametrize("category", [DeprecationWarning, FutureWarning])
def test_deprecations_raised_in_our_modules_fail_a_test(category):
    with pytest.raises(category):
        warnings.warn_explicit("old api", category, "loop.py", 1, module="mentalese.decoding.loop")
    with pytest.warns(category):  # another package's stay warnings
        warnings.warn_explicit("old api", category, "other.py", 1, module="otherpkg.module")
