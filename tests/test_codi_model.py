"""CODI model: architectures, latent decoding in the shared loop, strict save/reload, bad inputs."""

import json

import pytest
import torch

from mentalese.config import load_config
from mentalese.decoding.loop import DecodeConfig, decode
from mentalese.errors import MentaleseError
from mentalese.methods.codi.config import CODIConfig
from mentalese.methods.codi.data import collate_codi, tokenize_codi_dataset, tokenize_codi_example
from mentalese.methods.codi.loss import codi_loss
from mentalese.methods.codi.model import build_codi_model, load_codi, save_codi
from mentalese.tasks.example import Example

PROMPTS = ["7+5*3\n", "1-4*2*9-3\n", "3*3\n"]


def codi_config(tmp_path, *overrides):
    return load_config(CODIConfig, None, [f"output_dir={tmp_path}", "report_to=none", "use_cpu=true",
                                          "num_latent=2", *overrides])


def chain_rows(tok, cfg):
    exs = [Example("7+5*3", "6", ["7+5=2", "2*3=6"]), Example("1-4*2", "4", ["1-4=7", "7*2=4"])]
    return [tokenize_codi_example(ex, tok, "{question}\n", cfg) for ex in exs]


@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen2", "qwen3"])
def test_loss_and_decoding_on_each_architecture(arch, tmp_path):
    cfg = codi_config(tmp_path, f"model_name_or_path=tiny-{arch}")
    model, tok = build_codi_model(cfg)
    batch = collate_codi(chain_rows(tok, cfg), tok.pad_token_id, model.bot_id, model.eot_id)
    out = codi_loss(model.lm, model.projection, batch, cfg.num_latent)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.student_hidden.shape[0] == model.config.num_hidden_layers + 1
    res = decode(model.lm, tok, PROMPTS, DecodeConfig(max_new_tokens=6, batch_size=2), strategy=model.strategy())
    # n + 2 latent steps (bot, thoughts, eot) are taken and never shown
    assert all(r.num_steps == 6 and r.num_tokens == 6 - (cfg.num_latent + 2) for r in res)


def test_latent_decoding_batched_equals_one_by_one(tmp_path):
    model, tok = build_codi_model(codi_config(tmp_path, "num_latent=3"))
    model.eval()
    cfg = DecodeConfig(max_new_tokens=12, batch_size=8)
    batched = decode(model.lm, tok, PROMPTS, cfg, strategy=model.strategy())
    alone = [decode(model.lm, tok, [p], cfg, strategy=model.strategy())[0] for p in PROMPTS]
    assert [r.token_ids for r in batched] == [r.token_ids for r in alone]


def test_strategy_feeds_bot_thoughts_eot_then_tokens(tmp_path):
    """The strategy's latent inputs match a hand-rolled loop: prompt, <bot>, n projected states, <eot>."""
    model, tok = build_codi_model(codi_config(tmp_path, "num_latent=2"))
    model.eval()
    res = decode(model.lm, tok, [PROMPTS[0]], DecodeConfig(max_new_tokens=7), strategy=model.strategy())[0]
    ids = tok(PROMPTS[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        embeds = model.lm.get_input_embeddings()(torch.cat([ids, torch.tensor([[model.bot_id]])], dim=1))
        for _ in range(2):
            h = model.lm(inputs_embeds=embeds, output_hidden_states=True).hidden_states[-1][:, -1]
            embeds = torch.cat([embeds, model.project(h)[:, None]], dim=1)
        embeds = torch.cat([embeds, model.lm.get_input_embeddings()(torch.tensor([[model.eot_id]]))], dim=1)
        expected = []
        for _ in range(3):
            nxt = model.lm(inputs_embeds=embeds).logits[:, -1].argmax(-1)
            expected.append(int(nxt))
            embeds = torch.cat([embeds, model.lm.get_input_embeddings()(nxt)[:, None]], dim=1)
    assert res.token_ids == expected


def test_zero_thoughts_decode(tmp_path):
    model, tok = build_codi_model(codi_config(tmp_path, "num_latent=0"))
    res = decode(model.lm, tok, PROMPTS, DecodeConfig(max_new_tokens=4), strategy=model.strategy())
    assert all(r.num_steps == 4 and r.num_tokens == 2 for r in res)


LORA = "lora={r: 4, alpha: 8, target_modules: [c_attn, c_proj, c_fc]}"


@pytest.mark.parametrize("extra", [[], [LORA, "special_token_init=normal"], [LORA, "train_special_tokens=true"]],
                         ids=["full", "lora-frozen-tokens", "lora-trainable-tokens"])
def test_save_and_reload_gives_identical_outputs(extra, tmp_path):
    lora = bool(extra)
    model, tok = build_codi_model(codi_config(tmp_path / "run", *extra))
    with torch.no_grad():  # move every weight away from its init so nothing is left to chance
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    model.eval()
    save_codi(model, tok, tmp_path / "saved")
    spec = json.loads((tmp_path / "saved" / "codi_config.json").read_text())
    assert spec["lora"] is lora and spec["num_latent"] == 2
    loaded, tok2 = load_codi(tmp_path / "saved")
    assert tok2.convert_tokens_to_ids(["<bot>", "<eot>"]) == [model.bot_id, model.eot_id]
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2), k1
    cfg = DecodeConfig(max_new_tokens=10)
    a = decode(model.lm, tok, PROMPTS, cfg, strategy=model.strategy())
    b = decode(loaded.lm, tok2, PROMPTS, cfg, strategy=loaded.strategy())
    assert [r.token_ids for r in a] == [r.token_ids for r in b]


def test_reload_is_strict(tmp_path):
    model, tok = build_codi_model(codi_config(tmp_path / "run"))
    save_codi(model, tok, tmp_path / "saved")
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "saved" / "projection.safetensors"))
    state.pop(next(iter(state)))
    save_file(state, str(tmp_path / "saved" / "projection.safetensors"))
    with pytest.raises(RuntimeError, match="Missing key"):
        load_codi(tmp_path / "saved")
    with pytest.raises(MentaleseError, match="not a saved CODI model"):
        load_codi(tmp_path / "run")


def test_special_tokens_trainable_or_frozen(tmp_path):
    full, _ = build_codi_model(codi_config(tmp_path / "a"))
    assert full.lm.get_input_embeddings().weight.requires_grad  # full FT: trainable by default
    lora, _ = build_codi_model(codi_config(tmp_path / "b", "lora={r: 4, target_modules: [c_attn]}"))
    assert not any(p.requires_grad for n, p in lora.lm.named_parameters() if "wte" in n)  # official LoRA: frozen
    cfg = codi_config(tmp_path / "c", "train_special_tokens=false")
    frozen, tok = build_codi_model(cfg)
    batch = collate_codi(chain_rows(tok, cfg), tok.pad_token_id, frozen.bot_id, frozen.eot_id)
    codi_loss(frozen.lm, frozen.projection, batch, 2).loss.backward()
    grad = frozen.lm.get_input_embeddings().weight.grad
    assert grad[[frozen.bot_id, frozen.eot_id]].abs().sum() == 0 and grad.abs().sum() > 0


# --- bad input -----------------------------------------------------------------------------

def test_bad_examples_are_skipped_and_counted(tmp_path):
    cfg = codi_config(tmp_path, "drop_non_numeric_answers=true", "max_length=40")
    model, tok = build_codi_model(cfg)
    exs = [Example("1+2", "3", ["1+2=3", "3+0=3"]),  # kept
           Example("1+2", "3", []),  # no CoT
           Example("1+2", "3", ["1+2=3"]),  # CoT empty once the last step is dropped
           Example("1-2", "-1", ["1-2=-1", "-1+0=-1"]),  # answer does not start with a digit
           Example("1+2" * 30, "3", ["1+2=3", "3+0=3"])]  # too long
    rows, counts = tokenize_codi_dataset(exs, tok, "{question}\n", cfg)
    assert len(rows) == 1
    assert counts == {"train_examples": 1, "skipped_no_cot": 1, "skipped_cot_empty_after_dropping_last_step": 1,
                      "skipped_non_numeric_answer": 1, "skipped_too_long": 1}
    with pytest.raises(MentaleseError, match="no CODI training examples"):
        tokenize_codi_dataset(exs[1:3], tok, "{question}\n", cfg)


def test_bad_config_values(tmp_path):
    with pytest.raises(MentaleseError, match="num_latent"):
        codi_config(tmp_path, "num_latent=-1")
    with pytest.raises(MentaleseError, match="distill_loss"):
        codi_config(tmp_path, "distill_loss=kl")
    with pytest.raises(MentaleseError, match="unknown tiny model"):
        codi_config(tmp_path, "model_name_or_path=tiny-bert")
    with pytest.raises(MentaleseError, match="empty or missing answer"):
        Example("1+2", "", ["1+2=3"])


def test_tokenizer_without_eos_is_refused(tmp_path):
    cfg = codi_config(tmp_path)
    model, tok = build_codi_model(cfg)
    tok.eos_token = None
    with pytest.raises(MentaleseError, match="no eos"):
        tokenize_codi_dataset([Example("1+2", "3", ["1+2=3", "3+0=3"])], tok, "{question}\n", cfg)


def test_distilled_position_default_token_and_offset(tmp_path):
    cfg = codi_config(tmp_path)
    model, tok = build_codi_model(cfg)
    ex = Example("1+2", "3", ["1+2=3", "3+0=3"])
    row = tokenize_codi_example(ex, tok, "{question}\n", cfg)
    answer = [tok.decode([t]) for t in row.answer_ids]
    assert answer[row.distill_index] == " " and answer[row.distill_index + 1] == "3"  # char tokenizer: ": 3"
    colon = tokenize_codi_example(ex, tok, "{question}\n", codi_config(tmp_path, "distill_token=':'"))
    assert answer[colon.distill_index] == ":"
    shifted = tokenize_codi_example(ex, tok, "{question}\n", codi_config(tmp_path, "distill_offset=-1"))
    assert shifted.distill_index == row.distill_index - 1
    with pytest.raises(MentaleseError, match="distill_token"):
        tokenize_codi_example(ex, tok, "{question}\n", codi_config(tmp_path, "distill_token=Q"))
