"""Data-parallel training (DDP, 2 CPU processes, gloo) gives the same per-step losses as 1 process.

Both sides run tests/distributed_worker.py: once as a plain process, once under
`python -m torch.distributed.run --standalone --nproc_per_node 2` (`accelerate launch --cpu` only starts
several CPU processes through mpirun). Transformers' Trainer prepares the model with accelerate, which
wraps it in DistributedDataParallel over gloo.

Same global batch on both sides, and what "the same" means per method:
- SFT and the BoLT M-step: 1 process x 8 rows == 2 processes x 4 rows. Trainer normalises the token-mean loss
  by the token count gathered over ranks (`average_tokens_across_devices`), so DDP equals one big batch.
- CODI: 1 process x 4 rows x 2 gradient-accumulation steps == 2 processes x 4 rows. CODI's loss is a
  per-micro-batch quantity (token means and the std that scales the distillation loss are taken over the
  micro-batch, as in the official code), so a DDP step equals gradient accumulation over the same
  micro-batches, not one 8-row batch.
Every run stays inside its first epoch: at an epoch's ragged end DDP pads the last batch with rows from the
start of the epoch (accelerate's even_batches) while 1 process takes a smaller batch, so losses differ there.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")]

WORKER = Path(__file__).with_name("distributed_worker.py")
LOSS_TOLERANCE = 1e-5  # absolute, per logged step; float32 sums in a different order differ by ~1e-6
NO_STEPS = "step_supervision.kind=none"  # no thoughts to supervise (codi/chain sets result_token)
CHAIN = "task_options={num_steps: 2, num_examples: 64}"
TOY = "toy_options={documents: 120, problems_per_document: 1, num_steps: 2, modulus: 10, seed: 0}"

# name -> (method, overrides for 1 process, overrides per rank for 2 processes)
RUNS = {
    "sft": ("sft", ["per_device_train_batch_size=8", CHAIN], ["per_device_train_batch_size=4", CHAIN]),
    "codi": ("codi", ["per_device_train_batch_size=4", "gradient_accumulation_steps=2", "num_latent=2", CHAIN],
             ["per_device_train_batch_size=4", "num_latent=2", CHAIN]),
    # no thoughts: the projection gets no gradient, DDP must be told (CODIConfig sets ddp_find_unused_parameters)
    "codi_no_thoughts": ("codi", ["per_device_train_batch_size=4", "gradient_accumulation_steps=2", "num_latent=0",
                                  NO_STEPS, CHAIN], ["per_device_train_batch_size=4", "num_latent=0", NO_STEPS, CHAIN]),
    # LoRA: frozen base and embedding, only adapter weights are synchronised
    "codi_lora": ("codi", ["per_device_train_batch_size=4", "gradient_accumulation_steps=2", "num_latent=2", CHAIN,
                           "lora={r: 4, alpha: 8, target_modules: [c_attn, c_fc]}"],
                  ["per_device_train_batch_size=4", "num_latent=2", CHAIN,
                   "lora={r: 4, alpha: 8, target_modules: [c_attn, c_fc]}"]),
    "bolt": ("bolt", ["per_device_train_batch_size=8", TOY, "teacher_docs=60"],
             ["per_device_train_batch_size=4", TOY, "teacher_docs=60"]),
}
# 2 processes: CODI (its own checkpoint format) trained 2 steps, then resumed to 4 by the worker's next run;
# the learning rate is constant (distributed_worker.COMMON), so the schedule does not depend on max_steps
RESUMED = [{"name": "codi_resumed", "method": "codi", "overrides": RUNS["codi"][2] + ["save_steps=2"] + extra}
           for extra in (["max_steps=2"], [])]


def _launch(root: Path, nproc: int) -> Path:
    side = 0 if nproc == 1 else 1
    spec = {"root": str(root / f"nproc{nproc}"),
            "runs": [{"name": n, "method": m, "overrides": o[side]} for n, (m, *o) in RUNS.items()]
            + (RESUMED if nproc > 1 else [])}
    spec_path = root / f"spec{nproc}.json"
    spec_path.write_text(json.dumps(spec))
    launcher = [] if nproc == 1 else ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, *launcher, str(WORKER), str(spec_path)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"{nproc}-process run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return Path(spec["root"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("distributed")
    return _launch(root, 1), _launch(root, 2)


def _run_dir(root: Path, name: str) -> Path:
    return root / name / "mstep" if RUNS[name][0] == "bolt" else root / name


def _logged_steps(run_dir: Path) -> list[dict]:
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return [h for h in history if "loss" in h]


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """Every saved tensor of the final model (HF model, CODI projection, LoRA adapter, special-token rows)."""
    files = sorted((run_dir / "model").rglob("*.safetensors"))
    assert files, f"no weights under {run_dir / 'model'}"
    return {f"{f.relative_to(run_dir)}:{k}": v for f in files for k, v in load_file(str(f)).items()}


@pytest.mark.parametrize("name", list(RUNS))
def test_two_processes_match_one(runs, name):
    one, two = (_run_dir(root, name) for root in runs)
    steps_one, steps_two = _logged_steps(one), _logged_steps(two)
    assert len(steps_one) == len(steps_two) == 4
    for a, b in zip(steps_one, steps_two):
        assert abs(a["loss"] - b["loss"]) <= LOSS_TOLERANCE, (name, a["step"], a["loss"], b["loss"])
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4), (name, a["step"])
        for part in ("student_ce", "teacher_ce", "distill"):  # CODI's parts, averaged over ranks
            if part in a:
                assert b[part] == pytest.approx(a[part], abs=2e-5), (name, part, a["step"])
    # the last update is in no logged loss: compare the saved weights
    w_one, w_two = _final_weights(one), _final_weights(two)
    assert w_one.keys() == w_two.keys()
    worst = max((w_one[k].float() - w_two[k].float()).abs().max().item() for k in w_one)
    assert worst <= 1e-4, (name, worst)


@pytest.mark.parametrize("name", list(RUNS))
def test_every_rank_runs_the_same_forward_passes(runs, name):
    _, two = runs
    passes = [json.loads((two / name / f"passes_rank{r}.json").read_text()) for r in range(2)]
    assert len(passes[0]) == 4 and passes[0] == passes[1]
    if RUNS[name][0] == "codi":  # teacher + prefill + thoughts + decoder
        latent = 0 if name == "codi_no_thoughts" else 2
        assert set(passes[0]) == {3 + latent}



def test_resumed_ddp_run_matches_uninterrupted(runs):
    _, two = runs
    resumed, straight = two / "codi_resumed", two / "codi"
    assert json.loads((resumed / "train_metrics.json").read_text())["resumed_from"].endswith("checkpoint-2")
    steps_resumed, steps_straight = _logged_steps(resumed), _logged_steps(straight)
    assert [s["step"] for s in steps_resumed] == [1, 2, 3, 4]
    for a, b in zip(steps_straight, steps_resumed):
        assert abs(a["loss"] - b["loss"]) <= LOSS_TOLERANCE, (a["step"], a["loss"], b["loss"])
    w_straight, w_resumed = _final_weights(straight), _final_weights(resumed)
    assert max((w_straight[k] - w_resumed[k]).abs().max().item() for k in w_straight) <= 1e-4
