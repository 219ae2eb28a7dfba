"""BoLT E-step: the weights/selection/ELBO math by hand, log q == teacher-forced log-prob, crash + resume."""

import json
import math
import random

import pytest
import torch

from mentalese.decoding.scoring import sequence_logprobs
from mentalese.errors import MentaleseError
from mentalese.methods.bolt.data_format import BoltTokenIds, add_bolt_tokens, chunk_document
from mentalese.methods.bolt.estep import (
    EStepConfig, elbo_estimates, estep_shard, chunk_prompts, log_mean_exp, log_weights, read_estep, run_estep,
    select_proposal, selection_probabilities,
)
from mentalese.models.loading import load_model_and_tokenizer
from mentalese.models.tiny import build_tiny_model, char_tokenizer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_tiny_model("gpt2", char_tokenizer(), tmp_path_factory.mktemp("m"), n_positions=128)
    model, tok = load_model_and_tokenizer(path, dtype="float32", device="cpu")
    torch.manual_seed(0)
    ids = add_bolt_tokens(model, tok)
    return model, tok, ids


def docs(n=5):
    texts = [f"Doc {d} says {d}+1 is {d + 1}. Then it ends. Really ends now." for d in range(n)]
    return [chunk_document(f"d{d}", t, mean=0, cap=1) for d, t in enumerate(texts)]


def test_weights_and_probabilities_by_hand():
    lw = log_weights([-3.0, -5.0, -4.0], [-1.0, -4.0, -2.0])
    assert lw == [-2.0, -1.0, -2.0]
    e = [math.exp(-2), math.exp(-1), math.exp(-2)]
    assert selection_probabilities(lw, "importance") == pytest.approx([x / sum(e) for x in e])
    assert selection_probabilities(lw, "best") == [0.0, 1.0, 0.0]
    assert selection_probabilities(lw, "uniform") == pytest.approx([1 / 3] * 3)
    assert selection_probabilities([-math.inf, 0.0, -math.inf], "uniform") == [0.0, 1.0, 0.0]
    assert selection_probabilities([-math.inf, 0.0, 0.0], "importance") == pytest.approx([0, 0.5, 0.5])
    with pytest.raises(MentaleseError, match="no valid proposal"):
        selection_probabilities([-math.inf] * 2, "importance")
    with pytest.raises(MentaleseError, match="selection"):
        selection_probabilities([0.0], "argmax")


def test_importance_resampling_frequencies():
    rng = random.Random(0)
    lw = [math.log(0.7), math.log(0.2), math.log(0.1)]
    counts = [0, 0, 0]
    for _ in range(20000):
        counts[select_proposal(lw, "importance", rng)] += 1
    assert [c / 20000 for c in counts] == pytest.approx([0.7, 0.2, 0.1], abs=0.015)
    assert all(select_proposal(lw, "best", rng) == 0 for _ in range(10))


def test_elbo_by_hand():
    rows = [[math.log(1.0), math.log(3.0), math.log(2.0), math.log(6.0)],
            [0.0, 0.0, 0.0, -math.inf]]
    out = elbo_estimates(rows, (1, 2, 4))  # row 1 has an unclosed 4th proposal: every k uses row 0 only
    assert out["elbo_k1"] == pytest.approx(0.0)
    assert out["elbo_k2"] == pytest.approx(math.log(2.0))
    assert out["elbo_k4"] == pytest.approx(math.log(3.0))
    assert out["elbo_k1_chunks"] == out["elbo_k2_chunks"] == out["elbo_k4_chunks"] == 1
    one = elbo_estimates([[math.log(2.0)], [-math.inf], [0.0]], (1, 2, 4))  # K = 1: only k = 1 exists
    assert one["elbo_k1"] == pytest.approx(math.log(2.0) / 2) and one["elbo_k1_chunks"] == 2
    assert math.isnan(one["elbo_k4"]) and one["elbo_k4_chunks"] == 0
    assert log_mean_exp([math.log(2), math.log(4)]) == pytest.approx(math.log(3))
    # the k-sample bound grows with k in expectation (Jensen): check on random weights
    g = torch.Generator().manual_seed(0)
    many = (torch.randn(2000, 4, generator=g) * 2).tolist()
    e = elbo_estimates(many)
    assert e["elbo_k1"] < e["elbo_k2"] < e["elbo_k4"]


def test_logq_from_sampling_equals_teacher_forced(tiny):
    model, tok, ids = tiny
    prompts, _ = chunk_prompts(tok, docs(2), EStepConfig(max_thought_tokens=24), 128)
    cfg = EStepConfig(num_samples=6, max_thought_tokens=40, batch_size=8, score_batch_size=5)
    records, stats = estep_shard(model, tok, prompts, ids, cfg, 0)
    assert stats["proposals"] == 6 * len(prompts)
    from mentalese.decoding.loop import DecodeConfig, decode
    from mentalese.methods.bolt.estep import LogProbSampler
    rows = [p.prefix + [ids.sol, ids.eol] + p.x + [ids.sol, ids.posterior] for p in prompts]
    res = decode(model, tok, rows, DecodeConfig(do_sample=True, max_new_tokens=24, batch_size=3, seed=7,
                                                 stop_token_ids=[ids.eol]), strategy=LogProbSampler())
    tf = sequence_logprobs(model, rows, [r.token_ids for r in res], batch_size=4, pad_id=tok.pad_token_id)
    for r, t in zip(res, tf):
        assert r.info["logq"] == pytest.approx(t, abs=1e-3)
    # the recorded log p is the teacher-forced <prior> Z EOL X after prefix SOL
    j = next(j for j, r in enumerate(records) if any(r["closed"]))
    rec, p = records[j], prompts[j]
    k = rec["closed"].index(True)
    z = tok(rec["proposals"][k], add_special_tokens=False)["input_ids"]
    want = sequence_logprobs(model, [p.prefix + [ids.sol]], [[ids.prior, *z, ids.eol, *p.x]])[0]
    assert rec["log_p"][k] == pytest.approx(want, abs=1e-3)
    assert rec["log_w"][k] == pytest.approx(rec["log_p"][k] - rec["log_q"][k])


def test_prior_proposals_weight_by_the_likelihood(tiny):
    """proposal=prior: Z ~ p(Z | P SOL <prior>), so log w = log p(<prior> | P SOL) + log p(X | P SOL <prior> Z EOL)."""
    model, tok, ids = tiny
    cfg = EStepConfig(num_samples=8, max_thought_tokens=60, batch_size=16, proposal="prior")
    prompts, _ = chunk_prompts(tok, docs(2), cfg, 128)
    records, _ = estep_shard(model, tok, prompts, ids, cfg, 0)
    checked = 0
    for rec, p in zip(records, prompts):
        for k, ok in enumerate(rec["closed"]):
            if not ok:
                continue
            z = tok(rec["proposals"][k], add_special_tokens=False)["input_ids"] + [ids.eol]
            logq = sequence_logprobs(model, [p.prefix + [ids.sol, ids.prior]], [z])[0]
            head, tail = sequence_logprobs(model, [p.prefix + [ids.sol], p.prefix + [ids.sol, ids.prior, *z]],
                                           [[ids.prior], p.x])
            assert rec["log_q"][k] == pytest.approx(logq, abs=1e-3)
            assert rec["log_w"][k] == pytest.approx(head + tail, abs=2e-3)
            checked += 1
    assert checked > 0
    with pytest.raises(MentaleseError, match="estep.proposal"):
        EStepConfig(proposal="teacher")


def test_unclosed_proposals_and_long_chunks_are_counted(tiny):
    model, tok, ids = tiny
    cfg = EStepConfig(num_samples=2, max_thought_tokens=1, batch_size=8)  # one token: almost never EOL
    prompts, too_long = chunk_prompts(tok, docs(1), cfg, 128)
    records, stats = estep_shard(model, tok, prompts, ids, cfg, 0)
    assert stats["unclosed_proposals"] == sum(not c for r in records for c in r["closed"]) > 0
    assert all(r["thought"] is None for r in records if not any(r["closed"]))
    long_doc = [chunk_document("long", "x" * 200 + ".", mean=0, cap=1)]
    prompts, too_long = chunk_prompts(tok, long_doc, EStepConfig(max_thought_tokens=8), 128)
    assert prompts == [] and too_long == ["long#0"]


class Crash(RuntimeError):
    pass


def test_crash_and_resume_equals_uninterrupted(tiny, tmp_path):
    model, tok, ids = tiny
    cfg = EStepConfig(num_samples=2, max_thought_tokens=16, shard_size=4, batch_size=8)
    corpus = docs(4)  # 12 chunks -> 3 shards
    full = run_estep(model, tok, corpus, tmp_path / "full", cfg, ids)
    assert full["num_shards"] == 3

    def crash_after_first(s):
        if s == 0:
            raise Crash
    with pytest.raises(Crash):
        run_estep(model, tok, corpus, tmp_path / "crashy", cfg, ids, after_shard=crash_after_first)
    manifest = json.loads((tmp_path / "crashy" / "manifest.json").read_text())
    assert list(manifest["shards"]) == ["0"]
    with pytest.raises(MentaleseError, match="incomplete"):
        read_estep(tmp_path / "crashy")
    first = (tmp_path / "crashy" / "shard-00000.jsonl").stat().st_mtime_ns
    resumed_shards = []
    run_estep(model, tok, corpus, tmp_path / "crashy", cfg, ids, after_shard=resumed_shards.append)
    assert resumed_shards == [1, 2]  # shard 0 was not recomputed
    assert (tmp_path / "crashy" / "shard-00000.jsonl").stat().st_mtime_ns == first
    a, b = read_estep(tmp_path / "full"), read_estep(tmp_path / "crashy")
    assert [r["chunk_id"] for r in a] == [r["chunk_id"] for r in b] and len({r["chunk_id"] for r in b}) == 12
    assert [r["thought"] for r in a] == [r["thought"] for r in b]
    with pytest.raises(MentaleseError, match="other chunks"):
        run_estep(model, tok, docs(3), tmp_path / "crashy", cfg, ids)
