"""`CODITrainer` (transformers `Trainer` with CODI's `compute_loss`) and `train_codi(cfg)`.

`train_codi` writes into `output_dir`:

    config.yaml          the resolved CODIConfig
    checkpoint-*/        Trainer checkpoints in the `save_codi` format (training resumes from the last one),
                         + step_decoder/ with step_supervision.kind=step_decoder (SIM-CoT's auxiliary decoder)
    model/               the final CODI model (`load_codi(output_dir / "model")`); never the step decoder,
                         which is used in training only
    train_metrics.json   Trainer's metrics, data counts (skipped examples by reason), last loss parts
    trainer_state.json   the final Trainer state (loss history; student/teacher/distill/step parts logged)
    train_done.json      written last: the run is finished (a rerun changes nothing; methods/checkpoints.py)
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from mentalese.errors import MentaleseError
from mentalese.methods.checkpoints import train_resuming
from mentalese.methods.codi.config import CODIConfig
from mentalese.methods.codi.data import CODICollator, tokenize_codi_dataset
from mentalese.methods.codi.model import base_model_path, build_codi_model, load_codi, save_codi
from mentalese.methods.step_supervision import (ModelWithStepDecoder, build_step_decoder, load_step_decoder_weights,
                                                save_step_decoder)
from mentalese.tasks.registry import get_benchmark, load_benchmark

log = logging.getLogger(__name__)


class CODITrainer(Trainer):
    """Trainer whose loss is `codi_loss` (through `CODIModel.forward`); saves and resumes in the `save_codi` format.
    With a step decoder the trained model is a `ModelWithStepDecoder`: checkpoints hold both, any other save
    (the final model) the CODI model alone."""

    def __init__(self, *args, codi_args: CODIConfig, **kwargs):
        super().__init__(*args, **kwargs)
        self.codi_args = codi_args
        self._parts: dict[str, list[float]] = {"student_ce": [], "teacher_ce": [], "distill": [], "step_ce": []}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # through the (DDP/FSDP/DeepSpeed-wrapped) model's forward: calling codi_loss on the unwrapped modules
        # would skip DDP's gradient all-reduce and FSDP's weight gathering
        a = self.codi_args
        out = model(inputs, a.num_latent, alpha=a.alpha, beta=a.beta, gamma=a.gamma, distill_kind=a.distill_loss,
                    divide_by_std=a.distill_divide_by_std, step_supervision=a.step_supervision)
        for name in self._parts:
            self._parts[name].append(float(getattr(out, name).detach()))
        return (out.loss, out) if return_outputs else out.loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs and self._parts["distill"]:  # add the mean loss parts since the last log
            means = torch.tensor([sum(v) / len(v) for v in self._parts.values()], device=self.args.device)
            means = self.accelerator.gather(means[None]).mean(0)  # over ranks, like Trainer's "loss"
            for name, value in zip(self._parts, means.tolist()):
                logs[name] = round(value, 5)
                self._parts[name].clear()
        super().log(logs, *args, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        if not self.args.should_save:  # Trainer calls _save on every rank; one writer
            return
        output_dir = output_dir or self.args.output_dir
        model = self.accelerator.unwrap_model(self.model)
        codi = model.model if isinstance(model, ModelWithStepDecoder) else model
        save_codi(codi, self.processing_class, output_dir)
        if codi is not model and Path(output_dir).name.startswith(PREFIX_CHECKPOINT_DIR):
            save_step_decoder(model.step_decoder, output_dir)  # for resuming; not part of the inference model

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        target = model or self.model
        loaded, _ = load_codi(resume_from_checkpoint, dtype=self.codi_args.dtype, device="cpu")
        if isinstance(target, ModelWithStepDecoder):
            load_step_decoder_weights(target.step_decoder, resume_from_checkpoint)
            target = target.model
        target.load_state_dict(loaded.state_dict(), strict=True)


def _is_zero3(trainer: Trainer) -> bool:
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    return bool(trainer.is_deepspeed_enabled and plugin is not None and plugin.zero_stage == 3)


def build_codi_dataset(cfg: CODIConfig, tokenizer):
    from datasets import Dataset

    spec = get_benchmark(cfg.task)
    examples = load_benchmark(cfg.task, cfg.train_split, data_dir=cfg.data_dir, limit=cfg.train_limit,
                              **cfg.task_options)
    rows, counts = tokenize_codi_dataset(examples, tokenizer, spec.prompt, cfg)
    return Dataset.from_list([r.to_dict() for r in rows]), counts


def _with_step_decoder(cfg: CODIConfig, model, dataset) -> ModelWithStepDecoder:
    """SIM-CoT: a decoder initialised from the starting LM (or step_supervision.decoder_model), trained with it."""
    width = model.lm.get_input_embeddings().weight.shape[1]
    decoder = build_step_decoder(cfg.step_supervision, base_model_path(cfg), cfg.dtype, str(cfg.device), width)
    vocab = decoder.lm.get_output_embeddings().weight.shape[0]
    top = max(t for row in dataset["step_decoder_ids"] for slot in row for t in slot)
    if top >= vocab:
        raise MentaleseError(f"step targets use token id {top} but the step decoder has {vocab} outputs: "
                             "step_supervision.decoder_model must share the tokenizer")
    return ModelWithStepDecoder(model, decoder)


def train_codi(cfg: CODIConfig, callbacks: list | None = None) -> Path:
    """Train CODI (or continue, or leave a finished run as it is), save the final model to output_dir/model
    (load it with `load_codi`), return that path. Under a distributed launch every rank calls this; the main
    process writes the files."""
    get_benchmark(cfg.task)  # a typo writes nothing

    def build_trainer():
        with cfg.main_process_first(local=cfg.save_on_each_node, desc="building the model"):  # tiny-*: once
            model, tokenizer = build_codi_model(cfg)
        dataset, counts = build_codi_dataset(cfg, tokenizer)
        collator = CODICollator(tokenizer.pad_token_id, model.bot_id, model.eot_id)
        if cfg.step_supervision.kind == "step_decoder":
            model = _with_step_decoder(cfg, model, dataset)
            counts["step_decoder_parameters"] = sum(p.numel() for p in model.step_decoder.parameters()
                                                    if p.requires_grad)
        trainer = CODITrainer(model=model, args=cfg, train_dataset=dataset, processing_class=tokenizer,
                              codi_args=cfg, data_collator=collator, callbacks=callbacks)
        if trainer.is_fsdp_enabled or _is_zero3(trainer):  # fail now rather than at the first checkpoint
            raise MentaleseError("CODI saves whole weights from the unwrapped model: FSDP and DeepSpeed ZeRO-3 "
                                 "(sharded weights) are not supported; use DDP or ZeRO-2 (docs/scale.md)")
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return trainer, {**counts, "trainable_parameters": trainable}

    # the main process writes the save_codi format (see CODITrainer._save)
    return train_resuming(cfg, build_trainer, lambda trainer, final: trainer.save_model(str(final)),
                          resume=cfg.resume, config=cfg)
