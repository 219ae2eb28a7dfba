"""Run the OFFICIAL Coconut code on a fixed tiny model and batch; write tests/data/parity/coconut_official.json.

Official code: github.com/facebookresearch/coconut at commit 27273cb8cca4bb763c041a63b036d0c3b7cbbb48
(coconut.py, dataset.py imported unchanged; their sha256 go into the fixture).

Recreate the env (outside this repo) and run, from the repo root:

    python3.11 -m venv /work/official_envs/coconut
    /work/official_envs/coconut/bin/pip install torch==2.13.0 transformers==4.46.2 numpy==2.1.3 \
        datasets==3.1.0 tqdm==4.67.0
    git clone https://github.com/facebookresearch/coconut /tmp/coconut
    git -C /tmp/coconut checkout 27273cb8cca4bb763c041a63b036d0c3b7cbbb48
    mkdir -p /work/official_envs/coconut/src && cp /tmp/coconut/{coconut,dataset}.py /work/official_envs/coconut/src/
    /work/official_envs/coconut/bin/python scripts/parity/coconut_official.py /work/official_envs/coconut/src

requirements.txt pins torch==2.5.1, transformers==4.46.2, numpy==2.1.3, datasets==3.1.0 (README: python 3.12).
Deviations: torch 2.13.0 (CPU) and python 3.11, the only ones available here; wandb is not installed (only
run.py uses it). The forward is float32 on CPU.

What runs, as run.py does it: the tokenizer gets pad = eos and the three marker tokens (already in the
tiny vocab, so no resize); get_dataset tokenizes question/steps/answer; get_cot_latent_dataset builds each
sample at a training stage; MyCollator left-pads so the first <|latent|> of every row is in one column;
Coconut.forward gives the loss, the logits (concatenated over its n_max+1 passes) and inputs_embeds with
the continuous thoughts filled in. Three batches: "final_stage" (stage beyond max_latent_stage: k = number
of steps capped at 3, no language steps left), "stage1_c2" (stage 1, c_thought 2: two thoughts and the
remaining steps) and "mixed_stages" (rows at stages 0..3, as uniform_prob mixing gives). Plus
Coconut.generate (batch size 1) on two questions.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch
from fixture_json import write_fixture  # beside this script

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "tests" / "data" / "parity" / "tiny_gpt2"
OUT = REPO / "tests" / "data" / "parity" / "coconut_official.json"
OFFICIAL_COMMIT = "27273cb8cca4bb763c041a63b036d0c3b7cbbb48"
OFFICIAL_FILES = ("coconut.py", "dataset.py")

SAMPLES = [  # question, steps, answer (whitespace-separated words of the tiny vocab); 3, 1, 2, 4 steps
    {"question": "1 2 * 3 4", "steps": ["1 2 * 4 = 4 8", "1 2 * 3 0 = 3 6 0", "4 8 + 3 6 0 = 4 0 8"],
     "answer": "4 0 8"},
    {"question": "5 * 6", "steps": ["<< 5 * 6 = 3 0 >>"], "answer": "3 0"},
    {"question": "( 2 + 3 ) * 4 + a", "steps": ["2 + 3 = 5", "5 * 4 = 2 0"], "answer": "2 0 + a"},
    {"question": "a + b + c", "steps": ["a + b = d", "d + c = e", "e = 7", "7 = 7"], "answer": "7"},
]
BATCHES = {  # name -> (per-row stage, c_thought, max_latent_stage, pad_latent_to_max)
    "final_stage": ([4, 4, 4, 4], 1, 3, False),
    "stage1_c2": ([1, 1, 1, 1], 2, 3, False),
    "mixed_stages": ([0, 1, 2, 3], 1, 3, False),
}
GENERATE = [(0, 3), (2, 2)]  # (sample, number of latents) for Coconut.generate
MAX_NEW_TOKENS = 6
FULL_LOGIT_ROWS = 2  # rows whose logits at every real position go into the fixture (the rest: a summary)


def floats(t: torch.Tensor) -> list:
    return t.detach().double().tolist()


def row_record(b: int, batch: dict, out, latent_id: int, full: bool) -> dict:
    """Everything of row b indexed by real-token position (the left padding stripped)."""
    mask = batch["attention_mask"][b].bool()
    cols = mask.nonzero().flatten()
    assert (cols == torch.arange(cols[0], cols[-1] + 1)).all(), "real tokens are contiguous"
    ids, labels = batch["input_ids"][b][cols], batch["labels"][b][cols]
    logits = out.logits[b][cols].float()
    log_probs = torch.log_softmax(logits[:-1], dim=-1)
    target = labels[1:]
    labelled = (target != -100).nonzero().flatten()
    latent_pos = (ids == latent_id).nonzero().flatten()
    rec = {
        "left_pad": int(cols[0]),
        "input_ids": ids.tolist(),
        "labels": labels.tolist(),
        "position_ids": batch["position_ids"][b][cols].tolist(),
        "latent_positions": latent_pos.tolist(),
        # the continuous thoughts: the input embedding that official forward put at each <|latent|>
        "thought_embeds": floats(out.inputs_embeds[b][cols][latent_pos]),
        "nll_positions": labelled.tolist(),  # logits at position t predict labels[t + 1]
        "nll": floats(-log_probs[labelled, target[labelled]]),
        "logit_sum": floats(logits.sum(-1)),
        "logit_sq_sum": floats((logits ** 2).sum(-1)),
        "argmax": logits.argmax(-1).tolist(),
    }
    if full:
        rec["logits"] = floats(logits)
    return rec


def main(official_src: Path) -> None:
    sys.path.insert(0, str(official_src))
    import transformers
    from coconut import Coconut
    from dataset import MyCollator, get_cot_latent_dataset, get_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)  # as run.py
    tokenizer.pad_token = tokenizer.eos_token
    for marker in ("<|start-latent|>", "<|end-latent|>", "<|latent|>"):
        tokenizer.add_tokens(marker)
    assert len(tokenizer) == 32, "the markers are words of the tiny vocab: no resize_token_embeddings"
    latent_id = tokenizer.convert_tokens_to_ids("<|latent|>")
    start_id = tokenizer.convert_tokens_to_ids("<|start-latent|>")
    end_id = tokenizer.convert_tokens_to_ids("<|end-latent|>")
    base = AutoModelForCausalLM.from_pretrained(MODEL_DIR)
    model = Coconut(base, latent_id, start_id, end_id, tokenizer.eos_token_id)
    model.eval()  # dropout is 0 in the tiny config: train() would give the same numbers

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "samples.json"
        path.write_text(json.dumps(SAMPLES))
        base_dataset = get_dataset(str(path), tokenizer)
    tokenized = [base_dataset[i] for i in range(len(SAMPLES))]
    collator = MyCollator(tokenizer, latent_id=latent_id, label_pad_token_id=-100)

    batches = {}
    for name, (stages, c_thought, max_stage, pad_to_max) in BATCHES.items():
        configs = SimpleNamespace(uniform_prob=0.0, max_latent_stage=max_stage, pad_latent_to_max=pad_to_max,
                                  c_thought=c_thought, no_cot=False)
        features = []
        for i, stage in enumerate(stages):  # one sample at a time: each row at its own stage
            row = get_cot_latent_dataset(stage, base_dataset.select([i]), configs, start_id, latent_id, end_id)[0]
            features.append({k: row[k] for k in ("input_ids", "labels", "attention_mask", "position_ids")})
        batch = collator(features)
        with torch.no_grad():
            out = model(**batch)
        batches[name] = {
            "stages": stages, "c_thought": c_thought, "max_latent_stage": max_stage, "pad_latent_to_max": pad_to_max,
            "n_latents": [int((batch["input_ids"][b] == latent_id).sum()) for b in range(len(stages))],
            "padded": {k: batch[k].tolist() for k in ("input_ids", "attention_mask", "labels", "position_ids")},
            "loss": float(out.loss),
            "rows": [row_record(b, batch, out, latent_id, b < FULL_LOGIT_ROWS) for b in range(len(stages))],
        }
        print(f"{name}: loss {float(out.loss):.8f} latents {batches[name]['n_latents']}")

    generations = []
    for i, k in GENERATE:
        prompt = tokenized[i]["question_tokenized"] + [start_id] + [latent_id] * k + [end_id]
        ids = torch.tensor([prompt])
        with torch.no_grad():
            tokens = model.generate(ids, torch.ones_like(ids), max_new_tokens=MAX_NEW_TOKENS)
        generations.append({"prompt": prompt, "max_new_tokens": MAX_NEW_TOKENS, "tokens": tokens[0].tolist()})

    fixture = {
        "official": {
            "repo": "github.com/facebookresearch/coconut", "commit": OFFICIAL_COMMIT,
            "files_sha256": {f: hashlib.sha256((official_src / f).read_bytes()).hexdigest() for f in OFFICIAL_FILES},
            "pinned": {"torch": "2.5.1", "transformers": "4.46.2", "python": "3.12"},
        },
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
        "command": "/work/official_envs/coconut/bin/python scripts/parity/coconut_official.py "
                   "/work/official_envs/coconut/src",
        "model_dir": "tests/data/parity/tiny_gpt2",
        "token_ids": {"latent": latent_id, "start_latent": start_id, "end_latent": end_id,
                      "eos": tokenizer.eos_token_id, "pad": tokenizer.pad_token_id},
        "samples": [{**s, "question_tokenized": t["question_tokenized"], "steps_tokenized": t["steps_tokenized"],
                     "answer_tokenized": t["answer_tokenized"]} for s, t in zip(SAMPLES, tokenized)],
        "batches": batches,
        "generate": generations,
    }
    write_fixture(OUT, fixture)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/official_envs/coconut/src"))
