"""Our Coconut == the official one (facebookresearch/coconut), on a fixed tiny GPT-2 and fixed batches.

The fixture tests/data/parity/coconut_official.json was written by scripts/parity/coconut_official.py,
which ran the official dataset.py + MyCollator + Coconut.forward/generate unchanged in their own env
(transformers 4.46.2; docs/parity.md). Here the same batches go through our data.py (stage_rows,
collate_coconut), coconut_forward and CoconutStrategy + decode (transformers 5.x). Official rows are
left-padded (first thoughts aligned); every per-row number in the fixture is indexed by the row's real
tokens, so it also holds for our right-padded layout.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

PARITY = Path(__file__).parent / "data" / "parity"
FIXTURE = json.loads((PARITY / "coconut_official.json").read_text())
BATCHES = list(FIXTURE["batches"])
IDS = FIXTURE["token_ids"]
LOSS_RTOL, ATOL = 1e-5, 2e-5


def f64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


@pytest.fixture(scope="module")
def lm(one_thread):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(PARITY / "tiny_gpt2", dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(PARITY / "tiny_gpt2")
    tok.pad_token = tok.eos_token  # as the official run.py
    return tok


def official_batch(name: str) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v) for k, v in FIXTURE["batches"][name]["padded"].items()}


def right_padded(name: str) -> dict[str, torch.Tensor]:
    """The official rows with the left padding moved to the right (position ids from the mask)."""
    rows = FIXTURE["batches"][name]["rows"]
    width = max(len(r["input_ids"]) for r in rows)
    out = {"input_ids": torch.full((len(rows), width), IDS["pad"]), "labels": torch.full((len(rows), width), -100),
           "attention_mask": torch.zeros((len(rows), width), dtype=torch.long)}
    for b, r in enumerate(rows):
        n = len(r["input_ids"])
        out["input_ids"][b, :n], out["labels"][b, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"])
        out["attention_mask"][b, :n] = 1
    return out


def assert_rows_match(out, batch: dict, name: str) -> None:
    """Loss, per-token NLL, logits and thoughts of every row against the official numbers."""
    official = FIXTURE["batches"][name]
    assert out.loss.item() == pytest.approx(official["loss"], rel=LOSS_RTOL)
    for b, rec in enumerate(official["rows"]):
        real = batch["attention_mask"][b].bool()
        logits = out.logits[b][real]
        assert logits.argmax(-1).tolist() == rec["argmax"], f"row {b}"
        torch.testing.assert_close(logits.sum(-1).double(), f64(rec["logit_sum"]), atol=1e-4, rtol=0)
        if "logits" in rec:
            torch.testing.assert_close(logits.double(), f64(rec["logits"]), atol=ATOL, rtol=0)
        target = torch.tensor(rec["labels"])[1:]
        pos = torch.tensor(rec["nll_positions"], dtype=torch.long)
        nll = -torch.log_softmax(logits[:-1].double(), -1)[pos, target[pos]]
        torch.testing.assert_close(nll, f64(rec["nll"]), atol=ATOL, rtol=0)
        k = len(rec["latent_positions"])
        assert out.thought_mask[b].sum().item() == k
        if k:  # the continuous thoughts official forward put into inputs_embeds
            torch.testing.assert_close(out.thought_hidden[b, :k].double(), f64(rec["thought_embeds"]),
                                       atol=ATOL, rtol=0)


def test_fixture_records_official_provenance():
    official, versions = FIXTURE["official"], FIXTURE["versions"]
    assert official["commit"] == "27273cb8cca4bb763c041a63b036d0c3b7cbbb48"
    assert set(official["files_sha256"]) == {"coconut.py", "dataset.py"}
    assert all(len(h) == 64 for h in official["files_sha256"].values())
    assert versions["transformers"] == official["pinned"]["transformers"] == "4.46.2"
    assert versions["torch"].startswith("2.") and versions["python"].startswith("3.")
    assert "scripts/parity/coconut_official.py" in FIXTURE["command"]
    assert (Path(__file__).parents[1] / "scripts" / "parity" / "coconut_official.py").is_file()


@pytest.mark.parametrize("name", BATCHES)
def test_stage_rows_and_collator_give_the_official_batch(name, tokenizer):
    """stage_rows (our get_cot_latent_dataset) + collate_coconut (our MyCollator) == the official batch."""
    from mentalese.methods.coconut import collate_coconut, stage_rows
    from mentalese.methods.coconut.data import CoconutExample, LatentTokenIds
    from mentalese.methods.step_supervision import StepSupervision

    spec = FIXTURE["batches"][name]
    cfg = SimpleNamespace(uniform_prob=0.0, max_latent_stage=spec["max_latent_stage"], c_thought=spec["c_thought"],
                          pad_latent_to_max=spec["pad_latent_to_max"], cot_step_separator="\n",
                          step_supervision=StepSupervision())
    ids = LatentTokenIds(start=IDS["start_latent"], latent=IDS["latent"], end=IDS["end_latent"])
    rows = []
    for sample, stage in zip(FIXTURE["samples"], spec["stages"]):  # each row at its own stage, as official
        example = CoconutExample(sample["question_tokenized"], sample["steps"], sample["answer_tokenized"])
        (row,), _ = stage_rows([example], tokenizer, stage, cfg, ids)
        rows.append(row)
    ours = collate_coconut(rows, pad_id=IDS["pad"], latent_id=IDS["latent"])
    for key, official in spec["padded"].items():
        assert ours[key].tolist() == official, key


@pytest.mark.parametrize("name", BATCHES)
def test_latent_forward_matches_official(name, lm):
    from mentalese.methods.coconut import coconut_forward

    batch = official_batch(name)
    with torch.no_grad():
        out = coconut_forward(lm, batch["input_ids"], batch["attention_mask"], batch["labels"], IDS["latent"],
                              position_ids=batch["position_ids"])
    assert_rows_match(out, batch, name)


@pytest.mark.parametrize("name", BATCHES)
def test_latent_forward_on_right_padding_matches_official(name, lm):
    """Our forward takes any padding (default position ids from the mask): same numbers as official."""
    from mentalese.methods.coconut import coconut_forward

    batch = right_padded(name)
    with torch.no_grad():
        out = coconut_forward(lm, batch["input_ids"], batch["attention_mask"], batch["labels"], IDS["latent"])
    assert_rows_match(out, batch, name)


def test_fixture_sees_the_thought_feedback(lm):
    """Without feeding hidden states back (the <|latent|> embedding stays) the loss is far from official,
    so the comparisons above would catch a forward that skipped or misplaced the thoughts."""
    batch = official_batch("final_stage")
    with torch.no_grad():
        plain = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"], labels=batch["labels"]).loss.item()
    assert abs(plain - FIXTURE["batches"]["final_stage"]["loss"]) > 1e-2


@pytest.mark.parametrize("case", range(len(FIXTURE["generate"])))
def test_greedy_decoding_matches_official_generate(case, lm, tokenizer):
    """CoconutStrategy in our decode loop == official Coconut.generate (batch size 1, greedy)."""
    from mentalese.decoding import DecodeConfig, decode
    from mentalese.methods.coconut import CoconutModel
    from mentalese.methods.coconut.data import LatentTokenIds
    from mentalese.methods.coconut.model import CoconutSpec

    gen = FIXTURE["generate"][case]
    prompt = gen["prompt"]
    k = prompt.count(IDS["latent"])
    question = prompt[: prompt.index(IDS["start_latent"])]
    spec = CoconutSpec(mode="coconut", num_latent=k, c_thought=1, max_latent_stage=k, stage=k,
                       start_latent_token="<|start-latent|>", end_latent_token="<|end-latent|>",
                       latent_token="<|latent|>")
    model = CoconutModel(lm, spec, LatentTokenIds(start=IDS["start_latent"], latent=IDS["latent"],
                                                  end=IDS["end_latent"]))
    config = DecodeConfig(max_new_tokens=k + 2 + gen["max_new_tokens"], add_special_tokens=False)
    (result,) = decode(lm, tokenizer, [question], config, strategy=model.strategy())
    assert result.token_ids == gen["tokens"][len(prompt):]
