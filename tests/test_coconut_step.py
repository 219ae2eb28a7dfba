"""Step supervision in Coconut: targets aligned with the replaced steps, the loss = Coconut's CE + weight x the
step loss computed by hand, bad settings refused, and short real curricula with each kind (the decoder is carried
from stage to stage, kept in checkpoints, never in the saved model)."""

import json

import pytest
import torch

from mentalese import api
from mentalese.config import load_config
from mentalese.errors import MentaleseError
from mentalese.methods.coconut.config import CoconutConfig
from mentalese.methods.coconut.data import collate_coconut, stage_rows, tokenize_coconut_examples
from mentalese.methods.coconut.loss import coconut_forward
from mentalese.methods.coconut.model import build_coconut_model, load_coconut
from mentalese.methods.step_supervision import STEP_DECODER_DIR, result_token_loss
from mentalese.models.tiny import build_tiny_model, char_tokenizer
from mentalese.recipes import resolve_recipe
from mentalese.tasks.example import Example

TINY = {"n_layer": 2, "n_embd": 32, "n_head": 2}
EXAMPLES = [Example("3+4*2", "4", cot_steps=["3+4=7", "7*2=4"]),
            Example("5-1*3-2", "0", cot_steps=["5-1=4", "4*3=2", "2-2=0"])]


def config(tmp_path, *overrides):
    return load_config(CoconutConfig, resolve_recipe("coconut/chain"),
                       [f"output_dir={tmp_path}", "use_cpu=true", *overrides])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_tiny_model("gpt2", char_tokenizer(), tmp_path_factory.mktemp("base") / "m", seed=0, **TINY)


def test_result_targets_are_the_removed_steps(base, tmp_path):
    cfg = config(tmp_path, "step_supervision.kind=result_token")
    model, tok = build_coconut_model(cfg, str(base), 2)
    rows, _ = tokenize_coconut_examples(EXAMPLES, tok, "{question}\n", cfg)
    staged, _ = stage_rows(rows, tok, 2, cfg, model.ids)
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"][0]  # noqa: E731
    assert [r["step_result_ids"] for r in staged] == [[ids("7"), ids("4")], [ids("4"), ids("2")]]
    staged0, _ = stage_rows(rows, tok, 0, cfg, model.ids)
    assert [r["step_result_ids"] for r in staged0] == [[], []]  # stage 0: nothing replaced, nothing supervised
    batch = collate_coconut(staged, tok.pad_token_id, model.latent_id)
    assert batch["step_result_ids"].tolist() == [[ids("7"), ids("4")], [ids("4"), ids("2")]]


def test_decoder_targets_one_slot_per_replaced_step(base, tmp_path):
    cfg = config(tmp_path, "step_supervision.kind=step_decoder")
    model, tok = build_coconut_model(cfg, str(base), 4)
    rows, _ = tokenize_coconut_examples(EXAMPLES, tok, "{question}\n", cfg)
    text = lambda r: [tok.decode(s[:-1]) for s in r["step_decoder_ids"]]  # noqa: E731  (each ends with eos)
    one, _ = stage_rows(rows, tok, 1, cfg, model.ids)
    assert [text(r) for r in one] == [["3+4=7"], ["5-1=4"]]
    four, _ = stage_rows(rows, tok, 4, cfg, model.ids)  # 4 thoughts; every step removed
    assert [r["step_decoder_ids"][-1] for r in four] == [[], []]  # slots past the steps: unsupervised
    assert [text(r)[:3] for r in four] == [["3+4=7", "7*2=4", ""], ["5-1=4", "4*3=2", "2-2=0"]]


def test_loss_is_coconut_ce_plus_the_weighted_result_loss(base, tmp_path):
    cfg = config(tmp_path, "step_supervision.kind=result_token", "step_supervision.weight=0.5")
    model, tok = build_coconut_model(cfg, str(base), 2)
    rows, _ = tokenize_coconut_examples(EXAMPLES, tok, "{question}\n", cfg)
    staged, _ = stage_rows(rows, tok, 2, cfg, model.ids)
    batch = collate_coconut(staged, tok.pad_token_id, model.latent_id)
    out = model(**batch)
    plain = coconut_forward(model.lm, batch["input_ids"], batch["attention_mask"], batch["labels"],
                            model.latent_id, batch["position_ids"])
    hand = result_token_loss(plain.thought_logits, batch["step_result_ids"])  # c = 1: thought j <- step j
    assert out.step_ce.item() > 0
    torch.testing.assert_close(out.step_ce, hand)
    torch.testing.assert_close(out.loss, plain.loss + 0.5 * hand)
    out.loss.backward()  # the step loss reaches the weights
    assert model.lm.get_input_embeddings().weight.grad.abs().sum() > 0


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(MentaleseError, match="thoughts_per_step=2 but c_thought=1"):
        config(tmp_path, "step_supervision.kind=result_token", "step_supervision.thoughts_per_step=2")
    with pytest.raises(MentaleseError, match="pause_as_thought has none"):
        config(tmp_path, "step_supervision.kind=result_token", "mode=pause_as_thought")
    with pytest.raises(MentaleseError, match="kind must be one of"):
        config(tmp_path, "step_supervision.kind=results")


RUN = {"max_steps": 16, "max_latent_stage": 2, "final_stage_steps": 0, "tiny_model_options": TINY,
       "task_options": {"num_steps": 2, "num_examples": 256}, "per_device_train_batch_size": 16,
       "learning_rate": 3e-3, "logging_steps": 2, "save_steps": 4, "save_total_limit": 1, "disable_tqdm": True,
       "use_cpu": True}


def logged(stage_dir, key):
    lines = (stage_dir / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line)[key] for line in lines if f'"{key}"' in line]


def test_result_token_curriculum_run_lowers_the_step_loss(tmp_path):
    api.train("coconut/chain", {**RUN, "output_dir": str(tmp_path), "step_supervision": {"kind": "result_token"}})
    step = logged(tmp_path / "stage-1", "step_ce")
    assert len(step) == 4 and step[-1] < step[0] - 0.3, step  # from a random model
    model, _ = load_coconut(tmp_path / "model", device="cpu")
    assert model.num_latent == 2


def test_step_decoder_is_carried_across_stages_and_kept_out_of_the_model(tmp_path):
    api.train("coconut/chain", {**RUN, "output_dir": str(tmp_path), "step_supervision": {"kind": "step_decoder"}})
    for k in (1, 2):
        stage = tmp_path / f"stage-{k}"
        assert (stage / STEP_DECODER_DIR / "model.safetensors").is_file()
        assert (stage / "checkpoint-8" / STEP_DECODER_DIR / "model.safetensors").is_file()
        assert not (stage / "model" / STEP_DECODER_DIR).exists()
        assert all(v > 0 for v in logged(stage, "step_ce"))
    assert not (tmp_path / "model" / STEP_DECODER_DIR).exists()
    first, second = logged(tmp_path / "stage-1", "step_ce"), logged(tmp_path / "stage-2", "step_ce")
    assert second[0] < first[0] - 0.3, (first, second)  # stage 2 starts from stage 1's trained decoder
    model, _ = load_coconut(tmp_path / "model", device="cpu")
    assert not any("step_decoder" in k for k in model.state_dict())
