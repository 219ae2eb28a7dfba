"""Step-supervised latents (methods/step_supervision.py): result-token loss and SIM-CoT's step decoder by hand,
the thought/step alignment, the CODI wiring, and a short real CODI training with the step decoder."""

import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import GPT2Config, GPT2LMHeadModel

from mentalese.config import load_config
from mentalese.errors import MentaleseError
from mentalese.methods.codi.config import CODIConfig
from mentalese.methods.codi.data import collate_codi, tokenize_codi_dataset, tokenize_codi_example
from mentalese.methods.codi.loss import codi_loss, run_student
from mentalese.methods.codi.model import build_codi_model, load_codi
from mentalese.methods.codi.trainer import train_codi
from mentalese.methods.formatting import IGNORE_INDEX
from mentalese.methods.step_supervision import (STEP_DECODER_DIR, StepDecoder, StepSupervision, build_step_decoder,
                                                load_step_decoder_weights, pad_step_targets, result_token_loss,
                                                result_token_targets, step_decoder_loss, step_decoder_targets)
from mentalese.models.tiny import build_tiny_model, char_tokenizer
from mentalese.recipes import resolve_recipe
from mentalese.tasks.example import Example

PROMPT = "{question}\n"
IGN = IGNORE_INDEX


# --- result_token ------------------------------------------------------------------------------------------

def test_result_token_loss_by_hand():
    logits = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], [[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])  # [B=2, n=2, V=3]
    targets = torch.tensor([[0, 2], [0, IGN]])
    expected = (math.log(3) + (math.log(math.e + 2) - 0.0) + (math.log(math.exp(2) + 2) - 2.0)) / 3
    assert result_token_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    assert result_token_loss(logits, torch.full((2, 2), IGN)).item() == 0.0
    with pytest.raises(MentaleseError, match="same"):
        result_token_loss(logits, targets[:, :1])


def test_alignment_with_c_thoughts_per_step():
    results = torch.tensor([[5, 6, 7], [8, IGN, IGN]])
    assert result_token_targets(results, 7, thoughts_per_step=2).tolist() == [
        [5, 5, 6, 6, 7, 7, IGN], [8, 8, IGN, IGN, IGN, IGN, IGN]]  # thought t -> step t // 2; none past the steps
    assert result_token_targets(results, 2).tolist() == [[5, 6], [8, IGN]]  # steps past the thoughts: dropped
    tok = char_tokenizer()
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]  # noqa: E731
    steps = ["1+2=3", "3*4=2", "2-5=7"]
    assert step_decoder_targets(tok, steps, 2) == [ids("1+2=3"), ids("3*4=2 2-5=7")]  # the rest merged into the last
    assert step_decoder_targets(tok, steps, 5) == [ids("1+2=3"), ids("3*4=2"), ids("2-5=7"), [], []]
    assert step_decoder_targets(tok, steps[:1], 3, answer="7") == [ids("1+2=3"), ids("7"), ids("7")]
    step_ids, mask = pad_step_targets([[[4, 5], [6]], [[7], []]], pad_id=0)
    assert step_ids.tolist() == [[[4, 5], [6, 0]], [[7, 0], [0, 0]]]
    assert mask.tolist() == [[[True, True], [True, False]], [[True, False], [False, False]]]


# --- step decoder on a tiny model, against a hand-built teacher-forced CE ---------------------------------------

@pytest.fixture(scope="module")
def tiny_decoder():
    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=11, n_embd=8, n_layer=1, n_head=2, n_positions=16)).eval()
    return StepDecoder(lm), torch.nn.Embedding(11, 8)


def hand_ce(decoder, embed, latents, tokens):
    """One row, one slot, no padding: inputs [latents, tokens], sum of CE over the tokens."""
    inputs = torch.cat([latents, embed(torch.tensor(tokens))])[None]
    logits = decoder.lm(inputs_embeds=inputs).logits[0]
    c = latents.shape[0]
    return sum(F.cross_entropy(logits[c - 1 + i], torch.tensor(t), reduction="sum") for i, t in enumerate(tokens))


@pytest.mark.parametrize("mean", ["token", "row"])
def test_step_decoder_loss_equals_hand_built_ce(tiny_decoder, mean):
    decoder, embed = tiny_decoder
    latents = torch.randn(3, 4, 8)  # B=3, 2 slots x c=2 latents
    rows = [[[1, 2, 3], [4]], [[5], []], [[6, 7], [8, 9, 10]]]  # row 1 has no step for slot 1
    step_ids, mask = pad_step_targets(rows)
    got = step_decoder_loss(decoder, latents, step_ids, mask, embed, thoughts_per_step=2, mean=mean)
    per_slot = []
    for s in range(2):
        have = [b for b in range(3) if rows[b][s]]
        total = sum(hand_ce(decoder, embed, latents[b, 2 * s:2 * s + 2], rows[b][s]) for b in have)
        per_slot.append(total / (sum(len(rows[b][s]) for b in have) if mean == "token" else len(have)))
    assert got.item() == pytest.approx((sum(per_slot) / 2).item(), rel=1e-5)


def test_gradients_reach_the_latents_through_the_decoder(tiny_decoder):
    decoder, embed = tiny_decoder
    latents = torch.randn(2, 3, 8, requires_grad=True)
    step_ids, mask = pad_step_targets([[[1, 2], [3], []], [[4], [], []]])
    step_decoder_loss(decoder, latents, step_ids, mask, embed).backward()
    grad = latents.grad.abs().sum(-1)
    assert (grad[0, :2] > 0).all() and grad[1, 0] > 0  # supervised latents
    assert grad[0, 2] == 0 and (grad[1, 1:] == 0).all()  # latents past the steps are unsupervised
    with pytest.raises(MentaleseError, match="need 6 latents"):
        step_decoder_loss(decoder, latents, step_ids, mask, embed, thoughts_per_step=2)


def test_decoder_from_the_base_lm_frees_only_a_tied_embedding(tmp_path):
    tok = char_tokenizer()
    for arch, tied in (("gpt2", True), ("llama", False)):
        path = build_tiny_model(arch, tok, tmp_path / arch, tie_word_embeddings=tied)
        decoder = build_step_decoder(StepSupervision(kind="step_decoder"), str(path), device="cpu")
        assert decoder.lm.get_input_embeddings().weight.requires_grad == tied  # untied: unused, frozen
        assert decoder.lm.get_output_embeddings().weight.requires_grad
    with pytest.raises(MentaleseError, match="width"):
        build_step_decoder(StepSupervision(kind="step_decoder"), str(path), device="cpu", hidden_size=7)


# --- CODI wiring --------------------------------------------------------------------------------------------

def codi_config(tmp_path, *overrides):
    return load_config(CODIConfig, None, [f"output_dir={tmp_path}", "report_to=none", "use_cpu=true",
                                          "num_latent=3", *overrides])


EXAMPLES = [Example("7+5*3", "6", ["7+5=2", "2*3=6"]), Example("1-4*2*9-3", "1", ["1-4=7", "7*2=4", "4*9=6", "6-3=3"]),
            Example("3*3", "9", ["3*3=9", "9+0=9"])]


@pytest.fixture(scope="module")
def tiny_codi(tmp_path_factory):
    out = tmp_path_factory.mktemp("codi")
    cfg = codi_config(out, "step_supervision.kind=step_decoder")
    model, tok = build_codi_model(cfg)
    model.eval()
    rows = [tokenize_codi_example(ex, tok, PROMPT, cfg) for ex in EXAMPLES]
    decoder = build_step_decoder(cfg.step_supervision, str(out / "init_model"), device="cpu").eval()
    return model, tok, cfg, rows, decoder


def test_codi_step_targets_are_the_teacher_steps_one_per_latent(tiny_codi):
    model, tok, cfg, rows, _ = tiny_codi
    batch = collate_codi(rows, tok.pad_token_id, model.bot_id, model.eot_id)
    assert batch["step_decoder_ids"].shape[:2] == (3, 4)  # n + 1 = 4 latents: <bot>, thoughts 1..3
    text = lambda b, s: tok.decode(batch["step_decoder_ids"][b, s][batch["step_decoder_mask"][b, s]])  # noqa: E731
    assert [text(1, s) for s in range(4)] == ["1-4=7</s>", "7*2=4</s>", "4*9=6</s>", ""]  # last step dropped
    assert text(0, 0) == "7+5=2</s>" and not batch["step_decoder_mask"][0, 1:].any()


def test_codi_loss_with_the_step_decoder_reads_the_projected_latents(tiny_codi):
    model, tok, cfg, rows, decoder = tiny_codi
    batch = collate_codi(rows, tok.pad_token_id, model.bot_id, model.eot_id)
    sup = StepSupervision(kind="step_decoder", weight=0.5)
    on = codi_loss(model.lm, model.projection, batch, cfg.num_latent, step_supervision=sup, step_decoder=decoder)
    off = codi_loss(model.lm, model.projection, batch, cfg.num_latent)
    latents = []
    with torch.no_grad():
        run_student(model.lm, model.projection, batch, cfg.num_latent, thought_latents=latents)
    expected = step_decoder_loss(decoder, torch.stack(latents, 1), batch["step_decoder_ids"],
                                 batch["step_decoder_mask"], model.lm.get_input_embeddings())
    assert len(latents) == cfg.num_latent + 1 and on.step_ce.item() == pytest.approx(expected.item(), rel=1e-5)
    assert on.loss.item() == pytest.approx(off.loss.item() + 0.5 * on.step_ce.item(), rel=1e-5)
    model.zero_grad()
    only = codi_loss(model.lm, model.projection, batch, cfg.num_latent, alpha=0, beta=0, gamma=0,
                     step_supervision=sup, step_decoder=decoder)
    only.loss.backward()
    assert sum(p.grad.abs().sum() for p in model.projection.parameters()) > 0  # through the latents into CODI
    with pytest.raises(MentaleseError, match="needs a StepDecoder"):
        codi_loss(model.lm, model.projection, batch, cfg.num_latent, step_supervision=sup)


def old_thought_result_ce(thought_logits, batch):  # the pre-refactor code path (methods/codi/loss.py, 2026-12-02)
    targets = batch["step_result_ids"]
    n = min(len(thought_logits), targets.shape[1])
    logits = torch.stack(thought_logits[:n], dim=1).float()
    labels = targets[:, :n]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)


@pytest.mark.parametrize("num_latent", [2, 6])  # fewer and more thoughts than the longest CoT's 4 steps
def test_result_token_gives_the_loss_of_the_old_thought_loss(tiny_codi, num_latent, tmp_path):
    model, tok, _, _, _ = tiny_codi
    cfg = codi_config(tmp_path, f"num_latent={num_latent}", "step_supervision.kind=result_token")
    batch = collate_codi([tokenize_codi_example(ex, tok, PROMPT, cfg) for ex in EXAMPLES], tok.pad_token_id,
                         model.bot_id, model.eot_id)
    out = codi_loss(model.lm, model.projection, batch, num_latent, step_supervision=cfg.step_supervision)
    captured = []
    with torch.no_grad():
        run_student(model.lm, model.projection, batch, num_latent, captured)
    old = old_thought_result_ce(captured, batch)
    off = codi_loss(model.lm, model.projection, batch, num_latent)
    assert out.step_ce.item() == pytest.approx(old.item(), rel=1e-6)
    assert out.loss.item() == pytest.approx(off.loss.item() + 1.0 * old.item(), rel=1e-6)  # delta = weight = 1


# --- bad input ----------------------------------------------------------------------------------------------

def test_old_thought_loss_weight_gets_a_one_line_hint(tmp_path):
    recipe = tmp_path / "old.yaml"
    recipe.write_text("method: codi\nthought_loss_weight: 1.0\n")
    for make in (lambda: load_config(CODIConfig, recipe, [f"output_dir={tmp_path}"]),
                 lambda: codi_config(tmp_path, "thought_loss_weight=1")):
        with pytest.raises(MentaleseError) as err:
            make()
        assert "step_supervision.kind=result_token step_supervision.weight=1" in str(err.value)
        assert "\n" not in str(err.value)


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(MentaleseError, match="kind must be one of none, result_token, step_decoder; got 'simcot'"):
        codi_config(tmp_path, "step_supervision.kind=simcot")
    with pytest.raises(MentaleseError, match="step_supervision.weight must be >= 0"):
        codi_config(tmp_path, "step_supervision.weight=-0.5")
    with pytest.raises(MentaleseError, match="beyond_steps must be one of none, answer"):
        codi_config(tmp_path, "step_supervision.beyond_steps=all")


def test_rows_without_step_targets_are_skipped_and_counted(tiny_codi, tmp_path):
    _, tok, _, _, _ = tiny_codi
    cfg = codi_config(tmp_path, "step_supervision.kind=result_token")
    no_results = [Example("5 5", "6", ["5 5 6", "6 6 6"]), *EXAMPLES]  # steps without an '=' have no result
    rows, counts = tokenize_codi_dataset(no_results, tok, PROMPT, cfg)
    assert len(rows) == 3 and counts["skipped_no_step_targets"] == 1
    with pytest.raises(MentaleseError, match="no CODI training examples left"):
        tokenize_codi_dataset(no_results[:1], tok, PROMPT, cfg)


# --- a short real CODI training with the step decoder: loss falls, decoder in checkpoints only, exact resume -----

def simcot_config(output_dir, *overrides):
    base = [f"output_dir={output_dir}", "max_steps=12", "task_options={num_steps: 3, num_examples: 400}",
            "per_device_train_batch_size=8", "num_latent=2", "save_steps=6", "logging_steps=2",
            "disable_tqdm=true", "use_cpu=true", "warmup_steps=0", "learning_rate=3e-3"]
    return load_config(CODIConfig, resolve_recipe("codi/chain_simcot"), base + list(overrides))


@pytest.fixture(scope="module")
def simcot_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("simcot_run")
    train_codi(simcot_config(run_dir))
    return run_dir


def test_step_decoder_training_lowers_the_step_loss(simcot_run):
    logs = [h for h in json.loads((simcot_run / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert logs[-1]["loss"] < 0.7 * logs[0]["loss"]
    assert logs[-1]["step_ce"] < 0.7 * logs[0]["step_ce"] and logs[0]["step_ce"] > 0
    metrics = json.loads((simcot_run / "train_metrics.json").read_text())
    assert 0 < metrics["step_decoder_parameters"] < metrics["trainable_parameters"]


def test_the_decoder_is_in_checkpoints_not_in_the_saved_model(simcot_run):
    assert not (simcot_run / "model" / STEP_DECODER_DIR).exists()
    model, _ = load_codi(simcot_run / "model")
    assert not any("step_decoder" in k for k in model.state_dict())
    for step in (6, 12):
        assert (simcot_run / f"checkpoint-{step}" / STEP_DECODER_DIR / "model.safetensors").is_file()
    with pytest.raises(MentaleseError, match="has no step decoder"):
        load_step_decoder_weights(StepDecoder(model.lm), simcot_run / "model")


def test_resume_restores_the_step_decoder(simcot_run, tmp_path):
    run_dir = tmp_path / "resumed"
    shutil.copytree(simcot_run, run_dir)
    shutil.rmtree(run_dir / "checkpoint-12")
    shutil.rmtree(run_dir / "model")
    train_codi(simcot_config(run_dir))
    assert json.loads((run_dir / "train_metrics.json").read_text())["resumed_from"].endswith("checkpoint-6")
    full, _ = load_codi(simcot_run / "model")
    resumed, _ = load_codi(run_dir / "model")
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3, msg=name)
    decoders = [load_file(str(d / "checkpoint-12" / STEP_DECODER_DIR / "model.safetensors")) for d in (simcot_run, run_dir)]
    for name, a in decoders[0].items():
        torch.testing.assert_close(a, decoders[1][name], atol=1e-4, rtol=1e-3, msg=name)
