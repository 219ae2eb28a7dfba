"""Run the OFFICIAL iCoT-SI training code on a fixed tiny model and batch; write tests/data/parity/icot_official.json.

Official code: github.com/da03/Internalize_CoT_Step_by_Step at commit c2e3891d8d577beeaff03fa3b076d1e4db96cfe8
(src/train.py, model.py, data.py, utils.py, configuration_model.py imported unchanged; sha256 in the fixture).

Recreate the env (outside this repo) and run, from the repo root:

    python3.11 -m venv /work/official_envs/icot
    /work/official_envs/icot/bin/pip install torch==2.13.0 transformers==4.43.3 tqdm
    git clone https://github.com/da03/Internalize_CoT_Step_by_Step /tmp/icot
    git -C /tmp/icot checkout c2e3891d8d577beeaff03fa3b076d1e4db96cfe8
    mkdir -p /work/official_envs/icot/src && cp /tmp/icot/src/*.py /work/official_envs/icot/src/
    /work/official_envs/icot/bin/python scripts/parity/icot_official.py /work/official_envs/icot/src

The repo pins nothing (README: "pip install transformers"). transformers 4.43.3 is the release that pip gave
on 2024-08-01, the date of the last change to src/train.py, and it still has the `transformers.AdamW` that
train.py imports (later 4.x releases dropped it). torch 2.13.0 (CPU), python 3.11: what is available here.

What runs: train.main() itself, with sys.argv set, on a 4-line data file in the official format
`question||cot #### answer`. Two things are patched from outside, nothing inside the official files:
  * torch.multinomial returns the fixed smoothing offsets of the case when drawn from the 1-d lambda
    distribution (generate()'s sampling in evaluate() goes to the real one), and
  * ImplicitModel.compute_loss is wrapped: it records, from main()'s frame, the batch before removal,
    scheduled_to_remove and the removed batch (input_ids, labels, position_ids) and the official loss,
    then stops main() (single-batch cases) or lets training go on (the schedule case, which records
    scheduled_to_remove at every training step).
"""

from __future__ import annotations

import hashlib
import math
import platform
import sys
import tempfile
from pathlib import Path

import torch
from fixture_json import write_fixture  # beside this script

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "tests" / "data" / "parity" / "tiny_gpt2"  # 'gpt2' in the path: train.py's keep_position check
OUT = REPO / "tests" / "data" / "parity" / "icot_official.json"
OFFICIAL_COMMIT = "c2e3891d8d577beeaff03fa3b076d1e4db96cfe8"
OFFICIAL_FILES = ("train.py", "model.py", "data.py", "utils.py", "configuration_model.py")

LINES = [  # official data format; CoT lengths 9, 2, 10, 15 tokens
    "1 2 * 3 4||1 2 * 4 = 4 8 + 3 6 0 #### 4 0 8",
    "5 * 6||3 0 #### 3 0",
    "( 2 + 3 ) * 4||5 * 4 = 2 0 + 0 0 #### 2 0",
    "a + b + c + d||a + b = e e + c = f f + d = g #### g",
]
CASES = {  # name -> (train.py flags, fixed smoothing offsets)
    "left_smoothed": (["--remove_start_from", "2", "--removal_smoothing_lambda", "4"], [0, 1, 0, 2]),
    "left_keep_position": (["--remove_start_from", "3", "--removal_smoothing_lambda", "4", "--keep_position"],
                           [1, 0, 6, 0]),
    "right_side": (["--remove_start_from", "1", "--removal_smoothing_lambda", "4", "--removal_side", "right"],
                   [0, 2, 1, 0]),
    "remove_all_keep_position": (["--remove_all_when_remove_beyond", "0", "--keep_position"], [0, 0, 0, 0]),
}
# One batch per epoch and remove_per_epoch 0.5: steps_per_removed_token = round(1 / 0.5) = 2, so the first
# step removes exactly --remove_start_from (+ offset).
COMMON = ["--batch_size", "4", "--epochs", "1", "--remove_per_epoch", "0.5", "--max_new_tokens", "1"]
SCHEDULE = ["--batch_size", "1", "--epochs", "3", "--remove_per_epoch", "2", "--remove_all_when_remove_beyond", "5",
            "--max_new_tokens", "1"]  # 4 steps an epoch, a token more every 2 steps, all removed from 5 on


class StopMain(Exception):
    pass


def floats(t: torch.Tensor) -> list:
    return t.detach().double().tolist()


def loss_record(out, labels: torch.Tensor) -> dict:
    logits = out.logits.float()
    log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
    target = labels[:, 1:]
    rows = []
    for b in range(logits.shape[0]):
        labelled = (target[b] != -100).nonzero().flatten()
        rows.append({"nll_positions": labelled.tolist(),  # logits at t predict labels[t + 1]
                     "nll": floats(-log_probs[b, labelled, target[b, labelled]]),
                     "logit_sum": floats(logits[b].sum(-1)),
                     "argmax": logits[b].argmax(-1).tolist()})
    return {"loss": float(out.loss), "total_tokens": int(out.total_tokens), "total_correct": int(out.total_correct),
            "token_accuracy": float(out.token_accuracy), "rows": rows}


def run_main(train, argv: list[str], offsets: list[int], stop_after_first: bool) -> list[dict]:
    """Run official train.main() with `argv`; return what the compute_loss wrapper recorded."""
    from model import ImplicitModel

    records, real_multinomial, real_compute_loss = [], torch.multinomial, ImplicitModel.compute_loss

    def fixed_offsets(distribution, num_samples, replacement=False, **kwargs):
        if distribution.dim() != 1:  # generate()'s sampling in evaluate()
            return real_multinomial(distribution, num_samples, replacement=replacement, **kwargs)
        return torch.tensor([offsets[i % len(offsets)] for i in range(num_samples)], dtype=torch.long)

    def recording_compute_loss(self, input_ids, labels, position_ids=None, output_attentions=False):
        out = real_compute_loss(self, input_ids, labels, position_ids=position_ids,
                                output_attentions=output_attentions)
        caller = sys._getframe(1)
        if caller.f_code.co_name != "main":
            return out  # evaluate()
        f = caller.f_locals
        scheduled = f["scheduled_to_remove"]
        rec = {"step": f["step"], "epoch": f["epoch"],
               "scheduled_to_remove": None if math.isinf(scheduled) else int(scheduled),
               "remove_all": math.isinf(scheduled)}
        if stop_after_first:
            rec.update({
                "input_ids_before": f["batch"]["input_ids_all"].tolist(),
                "labels_before": f["batch"]["labels_all"].tolist(),
                "offsets": f["random_removal_offset"].tolist(),
                "all_cot_removed_in_batch": bool(f["all_cot_removed_in_batch"]),
                "input_ids": input_ids.tolist(), "labels": labels.tolist(),
                "position_ids": None if position_ids is None else position_ids.tolist(),
                **loss_record(out, labels),
            })
        records.append(rec)
        if stop_after_first:
            raise StopMain
        return out

    torch.multinomial, ImplicitModel.compute_loss = fixed_offsets, recording_compute_loss
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data.txt"
            data.write_text("\n".join(LINES) + "\n")
            sys.argv = ["train.py", "--model", str(MODEL_DIR), "--train_path", str(data), "--val_path", str(data),
                        "--save_model", str(Path(tmp) / "ckpt"), *argv]
            try:
                train.main()
            except StopMain:
                pass
    finally:
        torch.multinomial, ImplicitModel.compute_loss = real_multinomial, real_compute_loss
    return records


def main(official_src: Path) -> None:
    sys.path.insert(0, str(official_src))
    import train
    import transformers

    cases = {}
    for name, (flags, offsets) in CASES.items():
        (rec,) = run_main(train, COMMON + flags, offsets, stop_after_first=True)
        cases[name] = {"flags": flags, **rec}
        print(f"{name}: scheduled {rec['scheduled_to_remove']} offsets {rec['offsets']} loss {rec['loss']:.8f}")
    schedule = run_main(train, SCHEDULE, [0], stop_after_first=False)
    fixture = {
        "official": {
            "repo": "github.com/da03/Internalize_CoT_Step_by_Step", "commit": OFFICIAL_COMMIT,
            "files_sha256": {f: hashlib.sha256((official_src / f).read_bytes()).hexdigest() for f in OFFICIAL_FILES},
            "pinned": {"transformers": "none (README: pip install transformers)"},
        },
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
        "command": "/work/official_envs/icot/bin/python scripts/parity/icot_official.py /work/official_envs/icot/src",
        "model_dir": "tests/data/parity/tiny_gpt2",
        "eos_id": 0,
        "lines": LINES,
        "common_flags": COMMON,
        "lambda_distribution": {str(lam): floats(train.compute_lambda_distribution(lam)[:8])
                                for lam in (4.0, 1.0, float("inf"))},
        "cases": cases,
        "schedule": {"flags": SCHEDULE, "steps_per_epoch": 4, "steps_per_removed_token": 2,
                     "scheduled_to_remove": [r["scheduled_to_remove"] for r in schedule],
                     "remove_all": [r["remove_all"] for r in schedule]},
    }
    write_fixture(OUT, fixture)
    print(f"schedule: {fixture['schedule']['scheduled_to_remove']}")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/official_envs/icot/src"))
