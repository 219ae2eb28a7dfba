"""`CODITrainer` (transformers `Trainer` with CODI's `compute_loss`) and `train_codi(cfg)`.

`train_codi` writes into `output_dir`:

    config.yaml          the resolved CODIConfig
    checkpoint-*/        Trainer checkpoints in the `save_codi` format (training resumes from the last one)
    model/               the final CODI model (`load_codi(output_dir / "model")`)
    train_metrics.json   Trainer's metrics, data counts (skipped examples by reason), last loss parts
    trainer_state.json   the final Trainer state (loss history; student/teacher/distill parts logged)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers import Trainer
from transformers.trainer_utils import get_last_checkpoint

from latentlab.config import save_config
from latentlab.methods.codi.config import CODIConfig
from latentlab.methods.codi.data import CODICollator, tokenize_codi_dataset
from latentlab.methods.codi.loss import codi_loss
from latentlab.methods.codi.model import CODIModel, build_codi_model, load_codi, save_codi
from latentlab.tasks.registry import get_benchmark, load_benchmark

log = logging.getLogger(__name__)


class CODITrainer(Trainer):
    """Trainer whose loss is `codi_loss`; saves and resumes in the `save_codi` format."""

    def __init__(self, *args, codi_args: CODIConfig, **kwargs):
        super().__init__(*args, **kwargs)
        self.codi_args = codi_args
        self._parts: dict[str, list[float]] = {"student_ce": [], "teacher_ce": [], "distill": []}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        a = self.codi_args
        codi: CODIModel = self.accelerator.unwrap_model(model)
        out = codi_loss(codi.lm, codi.projection, inputs, a.num_latent, a.alpha, a.beta, a.gamma,
                        a.distill_loss, a.distill_divide_by_std)
        for name in self._parts:
            self._parts[name].append(float(getattr(out, name).detach()))
        return (out.loss, out) if return_outputs else out.loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs and self._parts["distill"]:  # add the mean loss parts since the last log
            for name, values in self._parts.items():
                logs[name] = round(sum(values) / len(values), 5)
                values.clear()
        super().log(logs, *args, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        save_codi(self.accelerator.unwrap_model(self.model), self.processing_class, output_dir or self.args.output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        target = model or self.model
        loaded, _ = load_codi(resume_from_checkpoint, dtype=self.codi_args.dtype, device="cpu")
        target.load_state_dict(loaded.state_dict(), strict=True)


def build_codi_dataset(cfg: CODIConfig, tokenizer):
    from datasets import Dataset

    spec = get_benchmark(cfg.task)
    examples = load_benchmark(cfg.task, cfg.train_split, data_dir=cfg.data_dir, limit=cfg.train_limit,
                              **cfg.task_options)
    rows, counts = tokenize_codi_dataset(examples, tokenizer, spec.prompt, cfg)
    return Dataset.from_list([r.to_dict() for r in rows]), counts


def train_codi(cfg: CODIConfig) -> Path:
    """Train CODI, save the final model to output_dir/model (load it with `load_codi`), return that path."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    model, tokenizer = build_codi_model(cfg)
    dataset, counts = build_codi_dataset(cfg, tokenizer)
    trainer = CODITrainer(
        model=model, args=cfg, train_dataset=dataset, processing_class=tokenizer, codi_args=cfg,
        data_collator=CODICollator(tokenizer.pad_token_id, model.bot_id, model.eot_id),
    )
    last = get_last_checkpoint(str(out)) if cfg.resume and out.is_dir() else None
    if last:
        log.info("resuming from %s", last)
    result = trainer.train(resume_from_checkpoint=last)
    final = save_codi(trainer.accelerator.unwrap_model(trainer.model), tokenizer, out / "model")
    trainer.state.save_to_json(str(out / "trainer_state.json"))
    metrics = {**result.metrics, **counts, "resumed_from": last,
               "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    (out / "train_metrics.json").write_text(json.dumps(metrics, indent=2))
    return final
