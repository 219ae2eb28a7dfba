"""CODI with step_supervision.kind=result_token (the per-thought result loss): targets, hand-computed CE, wiring."""

import math

import pytest
import torch

from mentalese.errors import MentaleseError
from mentalese.methods.codi.data import collate_codi, step_result_ids, tokenize_codi_example
from mentalese.methods.codi.loss import codi_loss, run_student
from mentalese.methods.formatting import IGNORE_INDEX
from mentalese.methods.step_supervision import StepSupervision, result_token_loss, result_token_targets
from mentalese.models.tiny import char_tokenizer
from test_codi_loss import PROMPT, batch_of, codi_config, examples, tiny_codi  # noqa: F401 (fixture)


def test_step_results_are_the_text_after_the_last_equals_sign():
    tok = char_tokenizer()
    ids = step_result_ids(tok, ["7+5=2", "<<600*30/100=180>>", "no result here", "a=b=7 "])
    digit = lambda c: tok(c, add_special_tokens=False)["input_ids"][0]  # noqa: E731
    assert ids == [digit("2"), digit("1"), IGNORE_INDEX, digit("7")]


def thought_result_ce(thought_logits, batch):  # the result-token loss on a list of [B, V] logits
    targets = result_token_targets(batch["step_result_ids"], len(thought_logits))
    return result_token_loss(torch.stack(thought_logits, dim=1), targets)


RESULT_TOKEN = StepSupervision(kind="result_token", weight=0.5)


def test_thought_ce_by_hand():
    # two thoughts, vocabulary of 3; row 0 supervises both thoughts, row 1 only the first
    logits = [torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])]
    batch = {"step_result_ids": torch.tensor([[0, 2, 1], [0, IGNORE_INDEX, IGNORE_INDEX]])}
    ce_uniform = math.log(3)
    ce_row1_t0 = -(2.0 - math.log(math.exp(2.0) + 2))  # target 0 with logits (2, 0, 0)
    ce_row0_t1 = -(0.0 - math.log(math.e + 2))  # target 2 with logits (1, 0, 0)
    expected = (ce_uniform + ce_row1_t0 + ce_row0_t1) / 3  # the third step has no thought: not counted
    assert thought_result_ce(logits, batch).item() == pytest.approx(expected, rel=1e-6)


def test_collated_targets_cover_every_step_padded(tiny_codi):
    model, tok, cfg, rows = tiny_codi
    targets = batch_of(model, tok, rows)["step_result_ids"]
    assert targets.shape == (3, 4)  # the longest CoT has 4 steps (the last step counts, unlike the teacher's CoT)
    assert (targets[0, 2:] == IGNORE_INDEX).all() and (targets[1] != IGNORE_INDEX).all()
    assert tok.decode(targets[1].tolist()) == "7463"


def test_codi_loss_adds_weight_times_the_thought_loss(tiny_codi):
    model, tok, cfg, rows = tiny_codi
    batch = batch_of(model, tok, rows)
    off = codi_loss(model.lm, model.projection, batch, cfg.num_latent)
    on = codi_loss(model.lm, model.projection, batch, cfg.num_latent, step_supervision=RESULT_TOKEN)
    assert off.step_ce.item() == 0.0 and on.step_ce.item() > 0
    assert on.loss.item() == pytest.approx(off.loss.item() + 0.5 * on.step_ce.item(), rel=1e-5)
    # the supervised outputs are the next-token logits at <bot> and at thoughts 1..n-1
    captured = []
    with torch.no_grad():
        run_student(model.lm, model.projection, batch, cfg.num_latent, captured)
    assert len(captured) == cfg.num_latent
    assert on.step_ce.item() == pytest.approx(thought_result_ce(captured, batch).item(), rel=1e-5)


def test_thought_loss_gradient_reaches_the_projection(tiny_codi):
    model, tok, cfg, rows = tiny_codi
    model.zero_grad()
    out = codi_loss(model.lm, model.projection, batch_of(model, tok, rows), cfg.num_latent, alpha=0, beta=0,
                    gamma=0, step_supervision=StepSupervision(kind="result_token"))
    out.step_ce.backward()
    assert sum(p.grad.abs().sum() for p in model.projection.parameters()) > 0


def test_negative_weight_is_refused(tmp_path):
    with pytest.raises(MentaleseError, match="step_supervision.weight must be >= 0"):
        codi_config(tmp_path, "step_supervision.weight=-1")


def test_old_rows_without_results_still_collate(tiny_codi):
    model, tok, cfg, rows = tiny_codi
    old = [{k: v for k, v in r.to_dict().items() if not k.startswith("step_")} for r in rows]
    batch = collate_codi(old, tok.pad_token_id, model.bot_id, model.eot_id)
    assert (batch["step_result_ids"] == IGNORE_INDEX).all() and "step_decoder_ids" not in batch
