"""Coconut config, stage layouts and the latent forward: hand-checked schedules and token layouts, batched ==
one-by-one, KV-cached == an uncached recompute, any padding == the official collator's."""

import logging

import pytest
import torch

from mentalese.config import load_config
from mentalese.errors import MentaleseError
from mentalese.methods.coconut.config import CoconutConfig, Stage, latent_steps, stage_plan
from mentalese.methods.coconut.data import collate_coconut, stage_rows, tokenize_coconut_examples
from mentalese.methods.coconut.loss import coconut_forward
from mentalese.methods.coconut.model import build_coconut_model
from mentalese.methods.formatting import IGNORE_INDEX
from mentalese.models.tiny import char_tokenizer, build_tiny_model
from mentalese.tasks.example import Example

PROMPT = "{question}\n"
TINY = {"n_layer": 2, "n_embd": 32, "n_head": 2}


def config(tmp_path, *overrides):
    return load_config(CoconutConfig, None, [f"output_dir={tmp_path}", "report_to=none", "use_cpu=true",
                                             "new_token_init=mean", *overrides])


def examples():
    return [Example("7+5*3", "6", ["7+5=2", "2*3=6"]), Example("1-4*2*9-3", "1", ["1-4=7", "7*2=4", "4*9=6", "6-3=3"]),
            Example("3*3", "9", ["3*3=9"])]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, one_thread):
    tmp = tmp_path_factory.mktemp("coconut_forward")
    base = build_tiny_model("gpt2", char_tokenizer(), tmp / "base", seed=0, **TINY)
    cfg = config(tmp, "c_thought=1", "max_latent_stage=3", "max_steps=10")
    model, tok = build_coconut_model(cfg, str(base), stage=3)
    model.eval()
    rows, _ = tokenize_coconut_examples(examples(), tok, PROMPT, cfg)
    return model, tok, cfg, rows


# --- config and schedule ------------------------------------------------------------------------

def test_c_thought_zero_is_refused(tmp_path):
    with pytest.raises(MentaleseError, match="c_thought must be >= 1"):
        config(tmp_path, "c_thought=0")


@pytest.mark.parametrize("overrides,match", [
    (["mode=cot"], "mode must be one of coconut, pause_as_thought, no_curriculum"),
    (["lora={r: 4}"], "lora is not supported"),
    (["gradient_checkpointing=true"], "gradient_checkpointing is not supported"),
    (["steps_per_stage=5", "max_steps=10"], "set steps_per_stage or max_steps"),
    (["num_train_epochs=3", "epochs_per_stage=3"], "nothing to train"),  # start_stage 1 begins at epoch 3
    (["final_stage_steps=4"], "final_stage_steps applies to step schedules"),
    (["max_steps=3"], "too short for 4 stages"),
    (["start_stage=5"], "start_stage must be in 0..4"),
    (["uniform_prob=1.5"], "uniform_prob must be in"),
])
def test_bad_config_values(tmp_path, overrides, match):
    with pytest.raises(MentaleseError, match=match):
        config(tmp_path, *overrides)


def test_official_epoch_schedules(tmp_path):
    # args/gsm_coconut.yaml: resume 3 (= start_stage 1), 3 epochs per stage, 25 epochs, 3 latent stages
    assert stage_plan(config(tmp_path)) == [Stage(1, epochs=3), Stage(2, epochs=3), Stage(3, epochs=3),
                                            Stage(4, epochs=13)]
    # args/prosqa_coconut.yaml: from stage 0, 5 epochs per stage, 50 epochs, 6 latent stages
    prosqa = stage_plan(config(tmp_path, "start_stage=0", "max_latent_stage=6", "epochs_per_stage=5",
                               "num_train_epochs=50", "c_thought=1"))
    assert prosqa == [Stage(k, epochs=5) for k in range(7)] + [Stage(7, epochs=15)]
    # fewer epochs than the curriculum: it stops inside stage 2
    assert stage_plan(config(tmp_path, "num_train_epochs=8")) == [Stage(1, epochs=3), Stage(2, epochs=2)]
    assert stage_plan(config(tmp_path, "mode=no_curriculum")) == [Stage(4, epochs=22)]


def test_step_schedules(tmp_path):
    assert stage_plan(config(tmp_path, "max_steps=10")) == [Stage(1, 2), Stage(2, 2), Stage(3, 2), Stage(4, 4)]
    assert stage_plan(config(tmp_path, "max_steps=10", "final_stage_steps=0")) == [
        Stage(1, 3), Stage(2, 3), Stage(3, 4)]  # the last stage takes the remainder
    assert stage_plan(config(tmp_path, "steps_per_stage=5", "final_stage_steps=7")) == [
        Stage(1, 5), Stage(2, 5), Stage(3, 5), Stage(4, 7)]
    assert stage_plan(config(tmp_path, "steps_per_stage=5", "mode=no_curriculum")) == [Stage(4, 20)]


def test_latent_steps_follow_the_official_rules():
    # (removed steps, steps' worth of thoughts) for an example with 2 steps, max_latent_stage 3
    assert [latent_steps(k, 2, 3, True) for k in range(5)] == [(0, 0), (1, 1), (2, 2), (2, 3), (2, 3)]
    # stage 3 > 2 steps: still 3 thoughts (not capped); final stage without padding: capped at the steps
    assert latent_steps(3, 2, 3, False) == (2, 3) and latent_steps(4, 2, 3, False) == (2, 2)


# --- data -------------------------------------------------------------------------------------

def test_stage_layouts_by_hand(tiny):
    model, tok, cfg, rows = tiny
    expected = {
        0: "7+5*3\n<|start-latent|><|end-latent|>7+5=2 2*3=6\nThe answer is: 6</s>",
        1: "7+5*3\n<|start-latent|><|latent|><|end-latent|>2*3=6\nThe answer is: 6</s>",
        2: "7+5*3\n<|start-latent|><|latent|><|latent|><|end-latent|>The answer is: 6</s>",
        3: "7+5*3\n<|start-latent|><|latent|><|latent|><|latent|><|end-latent|>The answer is: 6</s>",
        4: "7+5*3\n<|start-latent|><|latent|><|latent|><|latent|><|end-latent|>The answer is: 6</s>",
    }
    for stage, text in expected.items():
        row = stage_rows(rows[:1], tok, stage, cfg, model.ids)[0][0]
        assert tok.decode(row["input_ids"]) == text
        head = 6 + 2 + min(stage, 3)  # "7+5*3\n", two markers, the thoughts: no labels there
        assert row["labels"][:head] == [IGNORE_INDEX] * head and row["labels"][head:] == row["input_ids"][head:]
    long = stage_rows(rows[1:2], tok, 2, cfg, model.ids)[0][0]
    assert tok.decode(long["input_ids"]).endswith("<|latent|><|end-latent|>4*9=6 6-3=3\nThe answer is: 1</s>")


def test_c_thoughts_per_step(tmp_path, tiny):
    model, tok, _, rows = tiny
    cfg = config(tmp_path, "c_thought=2", "max_latent_stage=3", "max_steps=10")
    row = stage_rows(rows[1:2], tok, 2, cfg, model.ids)[0][0]
    assert row["input_ids"].count(model.latent_id) == 4


def test_rows_without_steps_are_counted_then_refused(tiny, caplog):
    _, tok, cfg, _ = tiny
    with caplog.at_level(logging.WARNING):
        kept, counts = tokenize_coconut_examples([*examples(), Example("4+4", "8", [])], tok, PROMPT, cfg)
    assert len(kept) == 3 and counts["skipped_no_cot"] == 1 and "skipped" in caplog.text
    with pytest.raises(MentaleseError, match="no Coconut training examples left"):
        tokenize_coconut_examples([Example("4+4", "8", [])], tok, PROMPT, cfg)


def test_stages_beyond_every_example_are_noted(tiny, tmp_path, caplog):
    _, tok, _, _ = tiny
    cfg = config(tmp_path, "max_latent_stage=6", "max_steps=20")
    with caplog.at_level(logging.WARNING):
        _, counts = tokenize_coconut_examples(examples(), tok, PROMPT, cfg)
    assert counts["fewer_steps_than_max_latent_stage"] == 3 and counts["most_steps"] == 4
    assert "3 of 3 examples have fewer than max_latent_stage=6 steps" in caplog.text


def test_uniform_prob_mixes_stages(tiny, tmp_path):
    model, tok, _, rows = tiny
    cfg = config(tmp_path, "uniform_prob=1.0", "c_thought=1", "max_latent_stage=3", "max_steps=10")
    mixed, counts = stage_rows(rows * 20, tok, 3, cfg, model.ids, seed=0)
    thoughts = {r["input_ids"].count(model.latent_id) for r in mixed}
    assert thoughts == {0, 1, 2, 3} and counts["stage_mixed_examples"] > 0  # stages 0..steps drawn


def test_collator_aligns_first_thoughts(tiny):
    model, tok, cfg, rows = tiny
    batch = collate_coconut(stage_rows(rows, tok, 1, cfg, model.ids)[0], tok.pad_token_id, model.latent_id)
    first = (batch["input_ids"] == model.latent_id).float().argmax(1)
    assert first.tolist() == [11, 11, 11]  # the longest question "1-4*2*9-3\n" + <|start-latent|>
    assert batch["position_ids"][0, 4:6].tolist() == [0, 1] and batch["attention_mask"][0, :4].sum() == 0  # "7+5*3\n": 4 shorter


# --- the latent forward -----------------------------------------------------------------------

def reference_logits(lm, ids: list[int], latent_id: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One row, no cache, no padding: recompute the whole sequence once per thought, as the definition says."""
    embeds = lm.get_input_embeddings()(torch.tensor([ids]))[0].clone()
    fed = []
    for p in [i for i, t in enumerate(ids) if t == latent_id]:
        hidden = lm(inputs_embeds=embeds[None], output_hidden_states=True).hidden_states[-1][0]
        embeds[p] = hidden[p - 1]
        fed.append(hidden[p - 1])
    return lm(inputs_embeds=embeds[None]).logits[0], fed


def mixed_rows(tiny):
    model, tok, cfg, rows = tiny  # rows at different stages in one batch: 0, 2, 3 and 1 thoughts
    return [stage_rows(rows[i:i + 1], tok, k, cfg, model.ids)[0][0] for i, k in [(0, 0), (1, 2), (2, 3), (1, 1)]]


@torch.no_grad()
def test_cached_forward_equals_uncached_recompute(tiny):
    model, tok, _, _ = tiny
    rows = mixed_rows(tiny)
    batch = collate_coconut(rows, tok.pad_token_id, model.latent_id)
    out = coconut_forward(model.lm, batch["input_ids"], batch["attention_mask"], batch["labels"], model.latent_id,
                          batch["position_ids"])
    for b, row in enumerate(rows):
        ref, fed = reference_logits(model.lm, row["input_ids"], model.latent_id)
        real = batch["attention_mask"][b].bool()
        torch.testing.assert_close(out.logits[b, real], ref, atol=1e-5, rtol=1e-4)
        k = len(fed)
        assert out.thought_mask[b].tolist() == [True] * k + [False] * (3 - k)
        if k:
            torch.testing.assert_close(out.thought_hidden[b, :k], torch.stack(fed), atol=1e-5, rtol=1e-4)
            head = model.lm.get_output_embeddings()(torch.stack(fed))  # logits before each thought
            torch.testing.assert_close(out.thought_logits[b, :k], head, atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_batched_loss_equals_one_by_one(tiny):
    model, tok, _, _ = tiny
    rows = mixed_rows(tiny)
    batch = collate_coconut(rows, tok.pad_token_id, model.latent_id)
    together = model(**batch)
    alone = [model(**collate_coconut([r], tok.pad_token_id, model.latent_id)) for r in rows]
    torch.testing.assert_close(together.loss_per_example, torch.stack([a.loss for a in alone]), atol=1e-5, rtol=1e-5)
    labelled = [sum(t != IGNORE_INDEX for t in r["labels"][1:]) for r in rows]
    mean = sum(a.loss * n for a, n in zip(alone, labelled)) / sum(labelled)  # official: mean over the batch's tokens
    torch.testing.assert_close(together.loss, mean, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_any_padding_gives_the_official_layouts_result(tiny):
    """Right padding only (thoughts not aligned) and left padding give the collator's numbers, in their own layout."""
    model, tok, _, _ = tiny
    rows = mixed_rows(tiny)
    official = model(**collate_coconut(rows, tok.pad_token_id, model.latent_id))
    width = max(len(r["input_ids"]) for r in rows)
    for left in (False, True):
        ids = torch.full((len(rows), width), tok.pad_token_id)
        mask, labels = torch.zeros_like(ids), torch.full_like(ids, IGNORE_INDEX)
        for b, r in enumerate(rows):
            cols = slice(width - len(r["input_ids"]), width) if left else slice(0, len(r["input_ids"]))
            ids[b, cols], mask[b, cols], labels[b, cols] = torch.tensor(r["input_ids"]), 1, torch.tensor(r["labels"])
        out = model(input_ids=ids, attention_mask=mask, labels=labels)  # default position ids
        torch.testing.assert_close(out.loss_per_example, official.loss_per_example, atol=1e-5, rtol=1e-5)
        for b, r in enumerate(rows):
            ref, _ = reference_logits(model.lm, r["input_ids"], model.latent_id)
            torch.testing.assert_close(out.logits[b, mask[b].bool()], ref, atol=1e-5, rtol=1e-4)


def test_gradients_flow_through_the_thoughts(tiny):
    """The prefix pass's last hidden states reach the loss only as the first thought (the question has no
    labels): its gradient is non-zero at the last position alone, so nothing is detached on the way."""
    model, tok, _, _ = tiny
    batch = collate_coconut([mixed_rows(tiny)[2]], tok.pad_token_id, model.latent_id)  # 3 thoughts
    first_pass = []

    def keep(module, args, kwargs, output):
        if not first_pass:
            output.hidden_states[-1].retain_grad()
            first_pass.append(output.hidden_states[-1])

    handle = model.lm.register_forward_hook(keep, with_kwargs=True)
    try:
        model(**batch).loss.backward()
    finally:
        handle.remove()
        model.zero_grad()
    grad = first_pass[0].grad[0].abs().sum(-1)
    assert grad[-1] > 0 and grad[:-1].sum() == 0


@torch.no_grad()
def test_pause_as_thought_is_one_plain_forward(tiny):
    model, tok, _, _ = tiny
    batch = collate_coconut(mixed_rows(tiny), tok.pad_token_id, model.latent_id)
    out = coconut_forward(model.lm, batch["input_ids"], batch["attention_mask"], batch["labels"], model.latent_id,
                          batch["position_ids"], continuous=False)
    plain = model.lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     position_ids=batch["position_ids"]).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(out.logits[real], plain[real], atol=1e-5, rtol=1e-5)


def test_scattered_thoughts_are_refused(tiny):
    model, tok, _, _ = tiny
    lat = model.latent_id
    ids = torch.tensor([[5, 6, lat, 7, lat, 8]])
    with pytest.raises(MentaleseError, match="must be contiguous"):
        coconut_forward(model.lm, ids, torch.ones_like(ids), None, lat)
