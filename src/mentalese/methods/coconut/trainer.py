"""`CoconutTrainer` (transformers `Trainer` with the Coconut forward) and `train_coconut(cfg)`: the curriculum.

Every stage of `stage_plan(cfg)` is its own Trainer run in output_dir/stage-<k>/, started from the
previous stage's final model (the first from `model_name_or_path`, normally a CoT-SFT model) through
`methods/checkpoints.py:train_resuming`. So each stage starts with a fresh optimizer (reset_optimizer;
with reset_optimizer=false the AdamW state is carried over), a crash resumes inside the stage it hit,
and a rerun of a finished run changes nothing. `train_coconut` writes into `output_dir`:

    config.yaml          the resolved CoconutConfig
    stage-<k>/           one Trainer run per stage: config.yaml, checkpoint-*/, model/ (a save_coconut dir),
                         train_metrics.json (data counts, thoughts per example), trainer_state.json, train_done.json;
                         with step_supervision.kind=step_decoder also step_decoder/ in every checkpoint and in the
                         stage dir (SIM-CoT's auxiliary decoder, training only: the next stage starts from it)
    model/               the last stage's model (`load_coconut(output_dir / "model")`)
    train_metrics.json   every stage's metrics
    train_done.json      written last: the whole curriculum is finished
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path

import torch
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from mentalese.atomic_files import write_text_atomic
from mentalese.errors import MentaleseError
from mentalese.methods.checkpoints import DONE_MARKER, finished_run, last_complete_checkpoint, train_resuming
from mentalese.methods.coconut.config import CoconutConfig, Stage, stage_plan
from mentalese.methods.coconut.data import CoconutCollator, stage_rows, tokenize_coconut_examples
from mentalese.methods.coconut.model import build_coconut_model, is_saved_coconut, load_coconut, save_coconut
from mentalese.methods.step_supervision import (ModelWithStepDecoder, build_step_decoder, load_step_decoder_weights,
                                                save_step_decoder)
from mentalese.models.tiny import resolve_base_model
from mentalese.tasks.registry import get_benchmark, load_benchmark

log = logging.getLogger(__name__)
FINAL_OPTIMIZER = "optimizer.pt"  # a stage's last AdamW state, kept when reset_optimizer=false


class CoconutTrainer(Trainer):
    """Trainer whose loss is `coconut_forward`'s (through `CoconutModel.forward`); saves and resumes in the
    `save_coconut` format; optionally starts from a carried optimizer state."""

    def __init__(self, *args, carried_optimizer: Path | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.carried_optimizer = carried_optimizer
        self._step_ce = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = model(**inputs)
        if out.step_ce is not None:
            self._step_ce.append(float(out.step_ce.detach()))
        return (out.loss, out) if return_outputs else out.loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs and self._step_ce:  # the mean step loss since the last log, over ranks
            mean = torch.tensor([sum(self._step_ce) / len(self._step_ce)], device=self.args.device)
            logs["step_ce"] = round(float(self.accelerator.gather(mean).mean()), 5)
            self._step_ce = []
        super().log(logs, *args, **kwargs)

    def create_optimizer(self, model=None):
        fresh = self.optimizer is None
        optimizer = super().create_optimizer(model)
        if fresh and self.carried_optimizer is not None:  # a resumed checkpoint's own state is loaded after this
            optimizer.load_state_dict(torch.load(self.carried_optimizer, map_location="cpu", weights_only=True))
        return optimizer

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        if not self.args.should_save:  # Trainer calls _save on every rank; one writer
            return
        output_dir = output_dir or self.args.output_dir
        model = self.accelerator.unwrap_model(self.model)
        coconut = model.model if isinstance(model, ModelWithStepDecoder) else model
        save_coconut(coconut, self.processing_class, output_dir)
        if coconut is not model and Path(output_dir).name.startswith(PREFIX_CHECKPOINT_DIR):
            save_step_decoder(model.step_decoder, output_dir)  # for resuming; not part of the inference model

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        target = model or self.model
        loaded, _ = load_coconut(resume_from_checkpoint, dtype=self.args.dtype, device="cpu")
        if isinstance(target, ModelWithStepDecoder):
            load_step_decoder_weights(target.step_decoder, resume_from_checkpoint)
            target = target.model
        target.load_state_dict(loaded.state_dict(), strict=True)


def with_step_decoder(cfg: CoconutConfig, model, base_model: str, previous: Path | None) -> ModelWithStepDecoder:
    """SIM-CoT: the decoder starts from the base LM (or step_supervision.decoder_model) at the first stage and
    from the previous stage's decoder after that (the official code keeps one decoder for the whole run)."""
    width = model.lm.get_input_embeddings().weight.shape[1]
    decoder = build_step_decoder(cfg.step_supervision, base_model, cfg.dtype, str(cfg.device), width)
    if previous is not None and (previous / "step_decoder").is_dir():
        load_step_decoder_weights(decoder, previous)
    return ModelWithStepDecoder(model, decoder)


def stage_args(cfg: CoconutConfig, stage: Stage, stage_dir: Path) -> CoconutConfig:
    """`cfg` for one stage's Trainer run: its own output_dir and length."""
    args = copy.copy(cfg)
    args.output_dir = str(stage_dir)
    args.max_steps = stage.steps if stage.steps is not None else -1
    if stage.epochs is not None:
        args.num_train_epochs = stage.epochs
    return args


def carried_state(stage_dir: Path) -> Path:
    """The previous stage's last optimizer state (its final save, else its last complete checkpoint's)."""
    final = stage_dir / FINAL_OPTIMIZER
    if final.is_file():
        return final
    last = last_complete_checkpoint(stage_dir)
    if last and (Path(last) / "optimizer.pt").is_file():
        return Path(last) / "optimizer.pt"
    raise MentaleseError(f"reset_optimizer=false but {stage_dir} holds no optimizer state to carry over; rerun "
                         "that stage (delete its train_done.json) or set reset_optimizer=true")


def _refuse_sharded(trainer: Trainer) -> None:
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    zero3 = trainer.is_deepspeed_enabled and plugin is not None and plugin.zero_stage == 3
    if trainer.is_fsdp_enabled or zero3:  # uneven numbers of latent passes per rank would also hang FSDP
        raise MentaleseError("Coconut saves whole weights from the unwrapped model: FSDP and DeepSpeed ZeRO-3 are "
                             "not supported; use DDP or ZeRO-2 (docs/scale.md)")


def train_coconut(cfg: CoconutConfig, callbacks: list | None = None) -> Path:
    """Train the curriculum (or continue it, or leave a finished run as it is), save the last stage's model to
    output_dir/model (load it with `load_coconut`), return that path. Every rank of a distributed launch
    calls this; the main process writes the files."""
    from mentalese.config import save_config

    spec = get_benchmark(cfg.task)  # a typo writes nothing
    plan = stage_plan(cfg)
    out, final = Path(cfg.output_dir), Path(cfg.output_dir) / "model"
    length = [[s.index, s.length] for s in plan]
    done = finished_run(out) if cfg.resume else None
    if done is not None and done.get("length") == length and is_saved_coconut(final):
        log.info("curriculum in %s is complete (stages %s); nothing to do", out, [s.index for s in plan])
        return final
    out.mkdir(parents=True, exist_ok=True)
    if cfg.should_save:
        (out / DONE_MARKER).unlink(missing_ok=True)
        save_config(cfg, out / "config.yaml")
    with cfg.main_process_first(local=cfg.save_on_each_node, desc="building the base model"):  # tiny-*: once
        init = resolve_base_model(cfg.model_name_or_path, cfg.output_dir, cfg.seed, cfg.tiny_model_options)
    base = str(init)  # the step decoder's initial weights (SIM-CoT: the starting LM)
    data: dict = {}  # examples, tokenised once, when the first unfinished stage needs them

    def examples(tokenizer):
        if "rows" not in data:
            raw = load_benchmark(cfg.task, cfg.train_split, data_dir=cfg.data_dir, limit=cfg.train_limit,
                                 **cfg.task_options)
            data["rows"], data["counts"] = tokenize_coconut_examples(raw, tokenizer, spec.prompt, cfg)
        return data["rows"], data["counts"]

    metrics, previous = {}, None
    for stage in plan:
        stage_dir = out / f"stage-{stage.index}"
        args = stage_args(cfg, stage, stage_dir)

        def build_trainer(stage=stage, args=args, init=init, previous=previous):
            carried = carried_state(previous) if previous is not None and not cfg.reset_optimizer else None
            with cfg.main_process_first(local=cfg.save_on_each_node, desc="building the model"):
                model, tokenizer = build_coconut_model(cfg, init, stage.index)
            from datasets import Dataset

            rows, counts = examples(tokenizer)
            stage_data, stage_counts = stage_rows(rows, tokenizer, stage.index, cfg, model.ids, seed=cfg.seed)
            thoughts = [r["input_ids"].count(model.latent_id) for r in stage_data]
            latent_id = model.latent_id
            if cfg.step_supervision.on and cfg.step_supervision.kind == "step_decoder":
                model = with_step_decoder(cfg, model, base, previous)
            trainer = CoconutTrainer(model=model, args=args, train_dataset=Dataset.from_list(stage_data),
                                     processing_class=tokenizer, callbacks=callbacks, carried_optimizer=carried,
                                     data_collator=CoconutCollator(tokenizer.pad_token_id, latent_id))
            _refuse_sharded(trainer)
            return trainer, {**counts, **stage_counts, "stage": stage.index, "carried_optimizer": str(carried),
                             "mean_thoughts": sum(thoughts) / len(thoughts), "max_thoughts": max(thoughts)}

        def save_final(trainer, model_dir, stage_dir=stage_dir):
            trainer.save_model(str(model_dir))
            trained = trainer.accelerator.unwrap_model(trainer.model)
            if isinstance(trained, ModelWithStepDecoder) and cfg.should_save:  # the next stage starts from it
                save_step_decoder(trained.step_decoder, stage_dir)
            if not cfg.reset_optimizer and cfg.should_save and trainer.optimizer is not None:
                trainer._save_optimizer_and_scheduler(str(stage_dir))  # Trainer writes optimizer.pt

        init = str(train_resuming(args, build_trainer, save_final, resume=cfg.resume, config=args))
        metrics[f"stage-{stage.index}"] = json.loads((stage_dir / "train_metrics.json").read_text())
        previous = stage_dir

    if cfg.should_save:
        _replace_dir(Path(init), final)
        write_text_atomic(out / "train_metrics.json", json.dumps(metrics, indent=2))
        write_text_atomic(out / DONE_MARKER, json.dumps({"length": length, "model": str(final)}, indent=2))
    from accelerate import PartialState

    PartialState().wait_for_everyone()
    return final


def _replace_dir(source: Path, target: Path) -> None:
    """`target` becomes a copy of `source`, swapped in by renames (never half-written)."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    old = target.with_name(f".{target.name}.old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
