"""CODI loss: hand-computed distillation numbers, padding invariance, one teacher pass == two."""

import math

import pytest
import torch

from mentalese.config import load_config
from mentalese.errors import MentaleseError
from mentalese.methods.codi.config import CODIConfig
from mentalese.methods.codi.data import collate_codi, tokenize_codi_example
from mentalese.methods.codi.loss import codi_loss, distillation_loss, token_ce
from mentalese.methods.codi.model import build_codi_model
from mentalese.tasks.example import Example

PROMPT = "{question}\n"


def codi_config(tmp_path, *overrides):
    return load_config(CODIConfig, None, [f"output_dir={tmp_path}", "report_to=none", "use_cpu=true",
                                          "num_latent=3", *overrides])


def examples():
    return [Example("7+5*3", "6", ["7+5=2", "2*3=6"]), Example("1-4*2*9-3", "1", ["1-4=7", "7*2=4", "4*9=6", "6-3=3"]),
            Example("3*3", "9", ["3*3=9", "9+0=9"])]


@pytest.fixture(scope="module")
def tiny_codi(tmp_path_factory):
    cfg = codi_config(tmp_path_factory.mktemp("codi"))
    model, tok = build_codi_model(cfg)
    model.eval()
    rows = [tokenize_codi_example(ex, tok, PROMPT, cfg) for ex in examples()]
    return model, tok, cfg, rows


def batch_of(model, tok, rows):
    return collate_codi(rows, tok.pad_token_id, model.bot_id, model.eot_id)


# --- distillation term by hand -------------------------------------------------------------

STUDENT = torch.zeros(2, 2, 2)  # [layers, batch, d]
TEACHER = torch.tensor([[[0.5, 3.0], [1.0, -1.0]], [[0.0, 0.0], [0.0, 0.0]]])


def test_smooth_l1_divided_by_teacher_std_by_hand():
    # layer 0: smooth_l1 of |0.5|,|3|,|1|,|-1| = 0.125, 2.5, 0.5, 0.5 -> mean 0.90625;
    # unbiased std of (0.5, 3, 1, -1) = sqrt(8.1875 / 3). Layer 1 matches exactly (loss 0, std 0 -> 0/0
    # is avoided by making the student equal): use a second layer with a shifted teacher instead.
    student = STUDENT.clone()
    teacher = TEACHER.clone()
    teacher[1] = torch.tensor([[2.0, 2.0], [2.0, 4.0]])  # diffs 2,2,2,4 -> 1.5,1.5,1.5,3.5 -> mean 2.0; std = 1
    got = distillation_loss(student, teacher, "smooth_l1", divide_by_std=True)
    expected = (0.90625 / math.sqrt(8.1875 / 3) + 2.0 / 1.0) / 2
    assert got.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("kind,expected", [("l1", (1.375 + 0.0) / 2), ("l2", (2.8125 + 0.0) / 2),
                                           ("smooth_l1", (0.90625 + 0.0) / 2)])
def test_distillation_kinds_without_std_by_hand(kind, expected):
    got = distillation_loss(STUDENT, TEACHER, kind, divide_by_std=False)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_distillation_does_not_backprop_into_teacher():
    teacher = TEACHER.clone().requires_grad_(True)
    student = STUDENT.clone().requires_grad_(True)
    distillation_loss(student, teacher, "l2", divide_by_std=False).backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0


def test_unknown_distillation_kind():
    with pytest.raises(MentaleseError, match="unknown distillation loss"):
        distillation_loss(STUDENT, TEACHER, "kl")


def test_token_ce_counts_only_labelled_tokens():
    logits = torch.zeros(1, 3, 4)  # uniform: CE = log 4 per labelled token
    total, count = token_ce(logits, torch.tensor([[-100, 2, -100]]))
    assert count.tolist() == [1] and total.item() == pytest.approx(math.log(4))


# --- the full loss on a tiny model ---------------------------------------------------------

def test_padded_batch_gives_the_same_per_example_losses(tiny_codi):
    model, tok, cfg, rows = tiny_codi
    with torch.no_grad():
        batched = codi_loss(model.lm, model.projection, batch_of(model, tok, rows), cfg.num_latent)
        for i, row in enumerate(rows):
            alone = codi_loss(model.lm, model.projection, batch_of(model, tok, [row]), cfg.num_latent)
            assert batched.student_ce_per_example[i].item() == pytest.approx(alone.student_ce.item(), abs=1e-5)
            assert batched.teacher_ce_per_example[i].item() == pytest.approx(alone.teacher_ce.item(), abs=1e-5)
            torch.testing.assert_close(batched.student_hidden[:, i], alone.student_hidden[:, 0], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(batched.teacher_hidden[:, i], alone.teacher_hidden[:, 0], atol=1e-5, rtol=1e-4)
    lengths = {len(r.question_ids) for r in rows}
    assert len(lengths) > 1, "the test needs examples of different lengths"


def test_one_teacher_pass_equals_two_in_eval_mode(tiny_codi):
    model, tok, cfg, rows = tiny_codi
    batch = batch_of(model, tok, rows)
    params = [p for p in model.parameters() if p.requires_grad]

    model.zero_grad()
    one = codi_loss(model.lm, model.projection, batch, cfg.num_latent)
    one.loss.backward()
    grads_one = [p.grad.clone() for p in params]

    # the official recipe: targets from a no-grad teacher pass, the teacher CE from a second pass
    model.zero_grad()
    rows_idx = torch.arange(len(rows))
    with torch.no_grad():
        ref = model.lm(input_ids=batch["teacher_ids"], attention_mask=batch["teacher_mask"], output_hidden_states=True)
        targets = torch.stack([h[rows_idx, batch["teacher_distill_pos"]] for h in ref.hidden_states])
    second = model.lm(input_ids=batch["teacher_ids"], attention_mask=batch["teacher_mask"])
    t_sum, t_count = token_ce(second.logits, batch["teacher_labels"])
    from mentalese.methods.codi.loss import run_student

    student = run_student(model.lm, model.projection, batch, cfg.num_latent)
    s_sum, s_count = token_ce(student.logits, batch["decoder_labels"])
    s_hidden = torch.stack([h[rows_idx, batch["student_distill_pos"]] for h in student.hidden_states])
    two = s_sum.sum() / s_count.sum() + distillation_loss(s_hidden, targets) + t_sum.sum() / t_count.sum()
    two.backward()

    assert one.loss.item() == pytest.approx(two.item(), rel=1e-5)
    for g1, p in zip(grads_one, params):
        torch.testing.assert_close(g1, p.grad, atol=1e-5, rtol=1e-4)


def test_weights_and_gradients(tiny_codi):
    model, tok, cfg, rows = tiny_codi
    batch = batch_of(model, tok, rows)
    model.zero_grad()
    out = codi_loss(model.lm, model.projection, batch, cfg.num_latent, alpha=0.5, beta=2.0, gamma=0.25)
    expected = 0.5 * out.student_ce + 2.0 * out.distill + 0.25 * out.teacher_ce
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    out.loss.backward()
    grads = [p.grad for p in model.projection.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0, "gradients must flow through the continuous thoughts"
    assert all(torch.isfinite(p.grad).all() for p in model.lm.parameters() if p.grad is not None)


def test_zero_latent_steps_run(tiny_codi):
    model, tok, cfg, rows = tiny_codi
    with torch.no_grad():
        out = codi_loss(model.lm, model.projection, batch_of(model, tok, rows), num_latent=0)
    assert torch.isfinite(out.loss)
    with pytest.raises(MentaleseError, match="num_latent"):
        codi_loss(model.lm, model.projection, batch_of(model, tok, rows), num_latent=-1)
