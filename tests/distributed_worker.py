"""Runs tiny SFT / CODI / BoLT M-step trainings for tests/test_distributed.py, in 1 process or under torchrun.

    python tests/distributed_worker.py spec.json                                    # 1 process
    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/distributed_worker.py spec.json

spec.json: {"root": DIR, "runs": [{"name": ..., "method": "sft"|"codi"|"bolt", "overrides": [k=v, ...]}]}.
Each run writes DIR/<name>/ (the method's usual files) and passes_rank<r>.json: the number of language-model
forward passes in each optimiser step on that rank (equal counts on every rank = no rank waits for another).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from transformers import TrainerCallback

COMMON = ["max_steps=4", "logging_steps=1", "save_steps=1000", "disable_tqdm=true", "report_to=none",
          "use_cpu=true", "seed=0", "dataloader_pin_memory=false", "lr_scheduler_type=constant",
          "warmup_steps=0"]


class PassCounter(TrainerCallback):
    """Counts forward calls of the language model per optimiser step and writes them per rank."""

    def __init__(self, out_dir: Path):
        self.out_dir, self.calls, self.per_step = out_dir, 0, []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        lm = getattr(model, "lm", model)  # CODIModel keeps its LM in .lm
        lm.register_forward_hook(lambda *_: setattr(self, "calls", self.calls + 1))

    def on_step_end(self, args, state, control, **kwargs):
        self.per_step.append(self.calls)
        self.calls = 0

    def on_train_end(self, args, state, control, **kwargs):
        (self.out_dir / f"passes_rank{args.process_index}.json").write_text(json.dumps(self.per_step))


def run_sft(out: Path, overrides: list[str]) -> None:
    from mentalese.config import load_config
    from mentalese.methods.sft import SFTConfig, train_sft
    from mentalese.recipes import resolve_recipe

    cfg = load_config(SFTConfig, resolve_recipe("sft/chain_cot"), [f"output_dir={out}"] + COMMON + overrides)
    train_sft(cfg, callbacks=[PassCounter(out)])


def run_codi(out: Path, overrides: list[str]) -> None:
    from mentalese.config import load_config
    from mentalese.methods.codi.config import CODIConfig
    from mentalese.methods.codi.trainer import train_codi
    from mentalese.recipes import resolve_recipe

    cfg = load_config(CODIConfig, resolve_recipe("codi/chain"), [f"output_dir={out}"] + COMMON + overrides)
    train_codi(cfg, callbacks=[PassCounter(out)])


def run_bolt_mstep(out: Path, overrides: list[str]) -> None:
    from mentalese.config import load_config
    from mentalese.methods.bolt.config import BoltConfig
    from mentalese.methods.bolt.data_format import chunk_corpus
    from mentalese.methods.bolt.em import load_documents, prepare_base_model, teacher_thoughts
    from mentalese.methods.bolt.mstep import corpus_rows, train_on_corpus
    from mentalese.models.loading import load_tokenizer
    from mentalese.recipes import resolve_recipe

    cfg = load_config(BoltConfig, resolve_recipe("bolt/toy_chain"), [f"output_dir={out}"] + COMMON + overrides)
    docs, _ = chunk_corpus(load_documents(cfg), cfg.chunk_mean_sentences, cfg.chunk_max_sentences)
    with cfg.main_process_first(local=False, desc="base model and teacher thoughts"):
        base = prepare_base_model(cfg, out)
        thoughts = teacher_thoughts(cfg, docs[:cfg.teacher_docs], out)
    rows, counts = corpus_rows(load_tokenizer(base), docs, thoughts, cfg.prior_probability, cfg.seq_len, cfg.seed)
    train_on_corpus(cfg, base, rows, out / "mstep", dtype=cfg.dtype, counts=counts, callbacks=[PassCounter(out)])


RUNNERS = {"sft": run_sft, "codi": run_codi, "bolt": run_bolt_mstep}


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    for run in spec["runs"]:
        out = Path(spec["root"]) / run["name"]
        out.mkdir(parents=True, exist_ok=True)
        RUNNERS[run["method"]](out, run["overrides"])


if __name__ == "__main__":
    main(sys.argv[1])
