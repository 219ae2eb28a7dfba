"""Our iCoT-SI == the official one (da03/Internalize_CoT_Step_by_Step), on a fixed tiny GPT-2 and batch.

The fixture tests/data/parity/icot_official.json was written by scripts/parity/icot_official.py, which ran
the official train.main() unchanged in its own env (transformers 4.43.3; docs/parity.md) with fixed
smoothing offsets, and recorded, at the official compute_loss call, the batch before removal, the removed
batch (input_ids, labels, position_ids) and the loss. Here the same batch goes through our removal.py,
loss.py and schedule.py (transformers 5.x).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

PARITY = Path(__file__).parent / "data" / "parity"
FIXTURE = json.loads((PARITY / "icot_official.json").read_text())
CASES = list(FIXTURE["cases"])
EOS = FIXTURE["eos_id"]


def flag(case: dict, name: str, default=None):
    flags = case["flags"]
    return flags[flags.index(name) + 1] if name in flags else default


def scheduled(case: dict) -> float:
    return math.inf if case["remove_all"] else case["scheduled_to_remove"]


def removed(name: str):
    from mentalese.methods.icot import remove_cot_official

    case = FIXTURE["cases"][name]
    return remove_cot_official(torch.tensor(case["input_ids_before"]), torch.tensor(case["labels_before"]), EOS,
                               scheduled(case), case["offsets"], side=flag(case, "--removal_side", "left"),
                               keep_position="--keep_position" in case["flags"])


@pytest.fixture(scope="module")
def lm(one_thread):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(PARITY / "tiny_gpt2", dtype=torch.float32).eval()


def test_fixture_records_official_provenance():
    official, versions = FIXTURE["official"], FIXTURE["versions"]
    assert official["commit"] == "c2e3891d8d577beeaff03fa3b076d1e4db96cfe8"
    assert set(official["files_sha256"]) == {"train.py", "model.py", "data.py", "utils.py", "configuration_model.py"}
    assert all(len(h) == 64 for h in official["files_sha256"].values())
    assert versions["transformers"] == "4.43.3"  # the repo pins none: docs/parity.md says why this one
    assert versions["torch"].startswith("2.") and versions["python"].startswith("3.")
    assert "scripts/parity/icot_official.py" in FIXTURE["command"]
    assert (Path(__file__).parents[1] / "scripts" / "parity" / "icot_official.py").is_file()


@pytest.mark.parametrize("lam", list(FIXTURE["lambda_distribution"]))
def test_lambda_distribution_matches_official(lam):
    from mentalese.methods.icot import lambda_distribution

    official = torch.tensor(FIXTURE["lambda_distribution"][lam], dtype=torch.float64)
    torch.testing.assert_close(lambda_distribution(float(lam))[:8].double(), official, atol=1e-7, rtol=0)


def test_schedule_matches_official_training_loop():
    from mentalese.methods.icot import RemovalSchedule, steps_per_removed_token

    spec = FIXTURE["schedule"]
    spt = steps_per_removed_token(spec["steps_per_epoch"], float(flag(spec, "--remove_per_epoch")))
    assert spt == spec["steps_per_removed_token"]
    schedule = RemovalSchedule(spt, remove_all_when_remove_beyond=float(flag(spec, "--remove_all_when_remove_beyond")))
    official = [math.inf if all_ else s for s, all_ in zip(spec["scheduled_to_remove"], spec["remove_all"])]
    assert [schedule.scheduled(k) for k in range(len(official))] == official


@pytest.mark.parametrize("name", CASES)
def test_removed_batch_is_token_identical(name):
    case, ours = FIXTURE["cases"][name], removed(name)
    assert ours.input_ids.tolist() == case["input_ids"]
    assert ours.labels.tolist() == case["labels"]
    assert (None if ours.position_ids is None else ours.position_ids.tolist()) == case["position_ids"]


@pytest.mark.parametrize("name", [n for n in CASES if flag(FIXTURE["cases"][n], "--removal_side", "left") == "left"])
def test_all_cot_removed_matches_official_on_the_left(name):
    assert removed(name).all_cot_removed == FIXTURE["cases"][name]["all_cot_removed_in_batch"]


def test_all_cot_removed_differs_from_official_on_the_right():
    """Documented difference. Official train.py sets all_cot_removed_in_batch = False only when a row's
    removal_to_position < second_sep_position; with removal_side=right removal_to is always the second
    <eos>, so the flag is always True (and with --reset_optimizer the optimizer is never reset once
    removal has begun). Ours says whether every row lost its whole CoT."""
    case, ours = FIXTURE["cases"]["right_side"], removed("right_side")
    assert case["all_cot_removed_in_batch"] is True
    assert ours.capped == [False, True, False, False]  # only "5 * 6" (a CoT of 2 tokens, s+o = 3) lost it all
    assert ours.all_cot_removed is False


@pytest.mark.parametrize("name", CASES)
def test_loss_matches_official(name, lm):
    from mentalese.methods.icot import compute_icot_loss

    case = FIXTURE["cases"][name]
    ids, labels = torch.tensor(case["input_ids"]), torch.tensor(case["labels"])
    positions = None if case["position_ids"] is None else torch.tensor(case["position_ids"])
    with torch.no_grad():
        ours = compute_icot_loss(lm, ids, labels, position_ids=positions)
        logits = lm(input_ids=ids, **({} if positions is None else {"position_ids": positions})).logits
    assert ours.loss.item() == pytest.approx(case["loss"], rel=1e-5)
    assert int(ours.total_tokens) == case["total_tokens"] and int(ours.total_correct) == case["total_correct"]
    assert ours.token_accuracy.item() == pytest.approx(case["token_accuracy"], rel=1e-6)
    log_probs = torch.log_softmax(logits[:, :-1].double(), -1)
    for b, rec in enumerate(case["rows"]):
        pos = torch.tensor(rec["nll_positions"], dtype=torch.long)
        target = labels[b, 1:][pos]
        nll = -log_probs[b, pos, target]
        torch.testing.assert_close(nll, torch.tensor(rec["nll"], dtype=torch.float64), atol=2e-5, rtol=0)
        assert logits[b].argmax(-1).tolist() == rec["argmax"]


@pytest.mark.parametrize("name", [n for n in CASES if "--keep_position" in FIXTURE["cases"][n]["flags"]])
def test_fixture_sees_the_kept_positions(name, lm):
    """The default positions give a clearly different loss: the fixture would catch lost position ids."""
    from mentalese.methods.icot import compute_icot_loss

    case = FIXTURE["cases"][name]
    with torch.no_grad():
        plain = compute_icot_loss(lm, torch.tensor(case["input_ids"]), torch.tensor(case["labels"])).loss.item()
    assert abs(plain - case["loss"]) > 1e-2
