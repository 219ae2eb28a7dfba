"""Coconut decoding, save/reload and training: batched == one-by-one == an uncached reference decode, sampling
from decode.*, reloaded == original, and a real curriculum run through the API and the CLI (rerun = no-op)."""

import json
from pathlib import Path

import pytest
import torch

from mentalese import api
from mentalese.commands.cli import main
from mentalese.config import load_config
from mentalese.decoding.loop import DecodeConfig, decode
from mentalese.errors import MentaleseError
from mentalese.evaluation.run import resolve_strategy, saved_latent_kind
from mentalese.methods.coconut.config import CoconutConfig
from mentalese.methods.coconut.model import build_coconut_model, load_coconut, save_coconut
from mentalese.models.tiny import build_tiny_model, char_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest
PROMPTS = ["7+5*3\n", "1-4*2*9-3\n", "3*3\n", "8-1\n"]
TINY = {"n_layer": 2, "n_embd": 32, "n_head": 2}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A random tiny Coconut model in each mode (3 thoughts), on one base."""
    tmp = tmp_path_factory.mktemp("coconut")
    base = build_tiny_model("gpt2", char_tokenizer(), tmp / "base", seed=1, **TINY)
    out = {}
    for mode in ("coconut", "pause_as_thought"):
        cfg = load_config(CoconutConfig, None, [f"output_dir={tmp / mode}", "use_cpu=true", "new_token_init=mean",
                                                f"mode={mode}", "c_thought=1", "max_latent_stage=3", "max_steps=8"])
        model, tok = build_coconut_model(cfg, str(base), stage=4)
        model.eval()
        out[mode] = (model, tok)
    return out


@torch.no_grad()
def reference_decode(model, tok, prompt: str, max_answer: int) -> list[int]:
    """The definition, one prompt, no cache: prompt + <|start-latent|> + n thoughts + <|end-latent|>, every thought
    the last hidden state of the whole sequence so far (pause: the <|latent|> embedding), then greedy tokens,
    recomputing the whole sequence for each (the official generate)."""
    lm, embed = model.lm, model.lm.get_input_embeddings()
    embeds = embed(torch.tensor([tok(prompt)["input_ids"] + [model.bot_id]]))
    for _ in range(model.num_latent):
        if model.spec.continuous:
            thought = lm(inputs_embeds=embeds, output_hidden_states=True).hidden_states[-1][:, -1:]
        else:
            thought = embed(torch.tensor([[model.latent_id]]))
        embeds = torch.cat([embeds, thought], dim=1)
    embeds = torch.cat([embeds, embed(torch.tensor([[model.eot_id]]))], dim=1)
    tokens = []
    for _ in range(max_answer):
        nxt = lm(inputs_embeds=embeds).logits[:, -1].argmax(-1)
        tokens.append(int(nxt))
        if int(nxt) == tok.eos_token_id:
            break
        embeds = torch.cat([embeds, embed(nxt)[:, None]], dim=1)
    return tokens


@pytest.mark.parametrize("mode", ["coconut", "pause_as_thought"])
def test_decode_equals_batched_one_by_one_and_the_uncached_reference(models, mode):
    model, tok = models[mode]
    config = DecodeConfig(max_new_tokens=12, batch_size=3)  # 5 latent steps + 7 answer tokens
    batched = decode(model.lm, tok, PROMPTS, config, strategy=model.strategy())
    alone = [decode(model.lm, tok, [p], config, strategy=model.strategy())[0] for p in PROMPTS]
    assert [r.token_ids for r in batched] == [r.token_ids for r in alone]
    for prompt, result in zip(PROMPTS, batched):
        assert result.token_ids == reference_decode(model, tok, prompt, 12 - 5)
        assert result.num_steps == 12 or result.stop_reason == "eos"


def test_thoughts_are_recorded(models):
    model, tok = models["coconut"]
    strategy = model.strategy(record_thoughts=True)
    decode(model.lm, tok, PROMPTS, DecodeConfig(max_new_tokens=6, batch_size=2), strategy=strategy)
    assert [t.shape for t in strategy.thoughts] == [torch.Size([2, 3, 32])] * 2


def test_answers_are_sampled_with_decode_settings(models):
    model, tok = models["coconut"]
    greedy = decode(model.lm, tok, PROMPTS, DecodeConfig(max_new_tokens=10), strategy=model.strategy())
    top1 = decode(model.lm, tok, PROMPTS, DecodeConfig(max_new_tokens=10, do_sample=True, top_k=1, seed=3),
                  strategy=model.strategy())
    assert [r.token_ids for r in top1] == [r.token_ids for r in greedy]  # top-k 1 sampling is greedy
    hot = [decode(model.lm, tok, PROMPTS, DecodeConfig(max_new_tokens=10, do_sample=True, temperature=5.0, seed=s),
                  strategy=model.strategy()) for s in (0, 0, 1)]
    assert [r.token_ids for r in hot[0]] == [r.token_ids for r in hot[1]]  # one seed, one draw
    assert [r.token_ids for r in hot[0]] != [r.token_ids for r in hot[2]]
    from mentalese.decoding.sampling import SamplingConfig

    with pytest.raises(MentaleseError, match="set sampling in the DecodeConfig only"):
        decode(model.lm, tok, PROMPTS, DecodeConfig(), strategy=model.strategy(SamplingConfig(do_sample=True)))


def test_save_and_reload_gives_identical_outputs(models, tmp_path):
    model, tok = models["coconut"]
    save_coconut(model, tok, tmp_path / "m")
    again, tok2 = load_coconut(tmp_path / "m", device="cpu")
    assert again.spec == model.spec and again.ids == model.ids
    config = DecodeConfig(max_new_tokens=12)
    assert ([r.token_ids for r in decode(again.lm, tok2, PROMPTS, config, strategy=again.strategy())]
            == [r.token_ids for r in decode(model.lm, tok, PROMPTS, config, strategy=model.strategy())])
    for name, weight in model.lm.state_dict().items():
        assert torch.equal(weight, again.lm.state_dict()[name]), name
    loaded = api.load(tmp_path / "m", device="cpu")
    assert loaded.kind == "coconut" and loaded.coconut.num_latent == 3 and saved_latent_kind(tmp_path / "m") == "coconut"
    with pytest.raises(MentaleseError, match="is a saved Coconut model: strategy=codi does not apply"):
        resolve_strategy("codi", "coconut", False, tmp_path / "m")
    with pytest.raises(MentaleseError, match="strategy=coconut needs a saved Coconut model"):
        resolve_strategy("coconut", None, False, "gpt2")
    with pytest.raises(MentaleseError, match="not a saved Coconut model"):
        load_coconut(tmp_path)


# --- a real curriculum run -----------------------------------------------------------------------------------

RUN = {"max_steps": 24, "max_latent_stage": 2, "final_stage_steps": 0, "tiny_model_options": TINY,
       "task_options": {"num_steps": 2, "num_examples": 256}, "per_device_train_batch_size": 16,
       "learning_rate": 3e-3, "logging_steps": 2, "save_steps": 100, "disable_tqdm": True, "use_cpu": True}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("coconut_run")
    model_dir = api.train("coconut/chain", {**RUN, "output_dir": str(out)})
    assert model_dir == out / "model"
    return out


def logged_losses(stage_dir: Path) -> list[float]:
    lines = (stage_dir / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if '"loss"' in line]


def test_curriculum_run(run_dir):
    assert sorted(p.name for p in run_dir.glob("stage-*")) == ["stage-1", "stage-2"]  # 12 steps each
    for k in (1, 2):
        stage = run_dir / f"stage-{k}"
        assert json.loads((stage / "train_done.json").read_text())["global_step"] == 12
        metrics = json.loads((stage / "train_metrics.json").read_text())
        assert metrics["stage"] == k and metrics["max_thoughts"] == k  # c = 1: k thoughts at stage k
    losses = logged_losses(run_dir / "stage-1")
    assert losses[-1] < losses[0] - 0.5, losses  # from a random model: the loss falls (4.35 -> 3.21 measured)
    model, _ = load_coconut(run_dir / "model", device="cpu")
    assert model.num_latent == 2 and model.spec.stage == 2
    metrics = api.evaluate(model=str(run_dir / "model"), benchmark="chain", limit=3, device="cpu",
                           task_options={"num_steps": 2}, decode={"max_new_tokens": 12},
                           output_dir=str(run_dir / "eval"), progress=False)
    assert metrics["method"] == "coconut" and metrics["num_latent"] == 2 and metrics["num_examples"] == 3


def test_rerun_through_the_cli_changes_nothing(run_dir, capsys):
    files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run_dir.rglob("*")
             if p.is_file() and "eval" not in p.parts}
    args = [f"{k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in RUN.items()]
    assert main(["train", "coconut/chain", *args, f"output_dir={run_dir}"]) == 0
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run_dir.rglob("*")
             if p.is_file() and "eval" not in p.parts}
    assert after == files


def test_optimizer_state_is_carried_across_stages_when_not_reset(tmp_path):
    run = {**RUN, "max_steps": 8, "task_options": {"num_steps": 2, "num_examples": 64}}
    api.train("coconut/chain", {**run, "reset_optimizer": False, "output_dir": str(tmp_path)})
    metrics = json.loads((tmp_path / "stage-2" / "train_metrics.json").read_text())
    assert metrics["carried_optimizer"] == str(tmp_path / "stage-1" / "optimizer.pt")
    state = torch.load(tmp_path / "stage-2" / "optimizer.pt", weights_only=True)["state"]
    assert {int(s["step"]) for s in state.values()} == {8}  # AdamW's step count runs on: 4 + 4, not 4
