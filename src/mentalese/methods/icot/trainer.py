"""`ICoTTrainer` (transformers `Trainer` whose loss removes CoT tokens first) and `train_icot(cfg)`.

One Trainer run for the whole schedule. At every optimizer step k the trainer takes the scheduled count
s(k) (schedule.py), draws one smoothing offset per row, removes s(k)+o CoT tokens (removal.py) and takes
the official token-mean CE (loss.py). When s(k) grows, the AdamW state is cleared before the step
(`reset_optimizer_state`; the official code builds a new AdamW): this keeps one run, one learning-rate
schedule and Trainer's own checkpoints, so resuming after a crash restores the state as it was since the
last reset, and a rerun of a finished run changes nothing (train_resuming). Offsets come from a generator
seeded by (seed, step, micro-batch, rank), so a resumed run draws the offsets the uninterrupted run drew.

The little state the schedule needs across a resume (was the previous batch's CoT all gone; the counts
of capped and skipped rows) lives in `ICoTProgress`, which Trainer saves in each checkpoint's
trainer_state.json and this trainer reads back when it resumes.

`train_icot` writes into `output_dir`: config.yaml, checkpoint-*/, model/ (a plain HF causal LM with its
tokenizer: `mentalese eval model=<output_dir>/model benchmark=<task>`), train_metrics.json (with the
removal counts), trainer_state.json, train_done.json.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import ExportableState

from mentalese.methods.checkpoints import train_resuming
from mentalese.methods.icot.config import ICoTConfig
from mentalese.methods.icot.data import ICoTCollator, build_icot_rows
from mentalese.methods.icot.loss import compute_icot_loss
from mentalese.methods.icot.removal import CoTSpans, lambda_distribution, remove_cot_tokens, sample_offsets
from mentalese.methods.icot.schedule import RemovalSchedule, should_reset_optimizer, steps_per_removed_token
from mentalese.tasks.registry import get_benchmark

log = logging.getLogger(__name__)


def reset_optimizer_state(optimizer) -> None:
    """Forget every parameter's AdamW moments and step count: the next step starts like a new optimizer's
    (same hyperparameters; the learning rate stays the scheduler's)."""
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps the torch one
    inner.state.clear()


class ICoTProgress(TrainerCallback, ExportableState):
    """Counts of the removal, saved with every checkpoint (trainer_state.json, stateful_callbacks)."""

    COUNTS = ("rows", "removed_tokens", "capped_rows", "skipped_long_rows", "optimizer_resets")

    def __init__(self):
        self.previous_batch_all_removed = False
        self.first_capped_step: int | None = None
        self.counts = dict.fromkeys(self.COUNTS, 0)

    def state(self) -> dict:
        return {"args": {}, "attributes": {"previous_batch_all_removed": self.previous_batch_all_removed,
                                           "first_capped_step": self.first_capped_step,
                                           "counts": dict(self.counts)}}

    def restore(self, saved: dict | None) -> None:
        for name, value in ((saved or {}).get("attributes") or {}).items():
            setattr(self, name, dict(value) if name == "counts" else value)


class ICoTTrainer(Trainer):
    """Trainer with the stepwise removal in `compute_loss` and the optimizer reset in `training_step`."""

    def __init__(self, *args, icot_args: ICoTConfig, schedule: RemovalSchedule, **kwargs):
        super().__init__(*args, **kwargs)
        self.icot_args = icot_args
        self.schedule = schedule
        self.offset_distribution = lambda_distribution(icot_args.removal_smoothing_lambda)
        self.add_callback(ICoTProgress())
        self.run_metrics: dict = {}  # train_icot's extra metrics; the removal counts are added after training
        self.loss_is_scaled_for_ga = False  # a per-micro-batch mean: Trainer divides by the accumulation steps
        self._step_seen, self._micro = -1, 0
        self._logged = {"removed": 0, "rows": 0, "capped": 0}

    def train(self, resume_from_checkpoint=None, **kwargs):
        if resume_from_checkpoint:  # the counts as they were when that checkpoint was written
            from transformers import TrainerState

            saved = TrainerState.load_from_json(str(Path(resume_from_checkpoint) / "trainer_state.json"))
            self.progress.restore(saved.stateful_callbacks.get(ICoTProgress.__name__))
        output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        self.run_metrics.update({f"icot_{k}": v for k, v in self.progress.counts.items()})
        self.run_metrics["icot_first_capped_step"] = self.progress.first_capped_step
        return output

    @property
    def progress(self) -> ICoTProgress:
        # looked up each time: with restore_callback_states_from_checkpoint Trainer swaps in a restored copy
        return next(cb for cb in self.callback_handler.callbacks if isinstance(cb, ICoTProgress))

    def training_step(self, model, inputs, num_items_in_batch=None):
        step = self.state.global_step
        if step != self._step_seen:  # the first micro-batch of optimizer step `step`
            self._step_seen, self._micro = step, 0
            self._maybe_reset_optimizer(step)
        else:
            self._micro += 1
        return super().training_step(model, inputs, num_items_in_batch)

    def _maybe_reset_optimizer(self, step: int) -> None:
        previous_all_removed = self.progress.previous_batch_all_removed
        if self.args.world_size > 1:  # one decision for all ranks, or their optimizer states drift apart
            flag = torch.tensor([float(previous_all_removed)], device=self.args.device)
            previous_all_removed = bool(self.accelerator.gather(flag).min() > 0)
        if should_reset_optimizer(self.schedule, step, previous_all_removed, self.icot_args.reset_optimizer):
            reset_optimizer_state(self.optimizer)
            self.progress.counts["optimizer_resets"] += 1

    def _offsets(self, step: int, rows: int) -> torch.Tensor:
        seed = (self.args.seed * 1_000_003 + step * 1_009 + self._micro) * 257 + self.args.process_index
        return sample_offsets(self.offset_distribution, rows, torch.Generator().manual_seed(seed))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        a, step = self.icot_args, self.state.global_step
        scheduled = self.schedule.scheduled(step)
        spans = CoTSpans(inputs["cot_start"].tolist(), inputs["cot_end"].tolist(), inputs["seq_end"].tolist())
        batch = remove_cot_tokens(inputs["input_ids"], inputs["labels"], spans, scheduled,
                                  self._offsets(step, len(spans.start)), side=a.removal_side,
                                  keep_position=a.keep_position, pad_id=self.pad_id)
        self._count(batch, step)
        input_ids, labels, positions = batch.input_ids, batch.labels, batch.position_ids
        lengths = torch.tensor(batch.lengths, device=input_ids.device)
        if a.max_len_train > 0 and int(lengths.max()) > a.max_len_train:
            keep = lengths <= a.max_len_train
            self.progress.counts["skipped_long_rows"] += int((~keep).sum())
            if not keep.any():  # nothing to learn from: a zero loss that still runs the model (DDP needs it)
                logits = model(input_ids=input_ids[:1, : a.max_len_train]).logits
                zero = logits.float().sum() * 0.0
                return (zero, None) if return_outputs else zero
            input_ids, labels, lengths = input_ids[keep], labels[keep], lengths[keep]
            positions = None if positions is None else positions[keep]
        width = int(lengths.max())
        attention = (torch.arange(width, device=input_ids.device)[None] < lengths[:, None]).long()
        out = compute_icot_loss(model, input_ids[:, :width], labels[:, :width],
                                None if positions is None else positions[:, :width], attention)
        return (out.loss, out) if return_outputs else out.loss

    def _count(self, batch, step: int) -> None:
        p = self.progress
        p.previous_batch_all_removed = batch.all_cot_removed
        capped = sum(batch.capped)
        p.counts["rows"] += len(batch.capped)
        p.counts["removed_tokens"] += sum(batch.removed)
        p.counts["capped_rows"] += capped
        self._logged["rows"] += len(batch.capped)
        self._logged["removed"] += sum(batch.removed)
        self._logged["capped"] += capped
        if capped and p.first_capped_step is None:
            p.first_capped_step = step
            log.info("step %d: s+o reaches past the CoT of %d of %d rows; their whole CoT is removed and nothing "
                     "more (official capping; counted as capped_rows)", step, capped, len(batch.capped))

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs and self._logged["rows"]:
            scheduled = self.schedule.scheduled(max(self.state.global_step - 1, 0))
            logs["icot_scheduled"] = scheduled if math.isfinite(scheduled) else "all"
            logs["icot_removed_mean"] = round(self._logged["removed"] / self._logged["rows"], 3)
            logs["icot_capped_frac"] = round(self._logged["capped"] / self._logged["rows"], 4)
            self._logged = dict.fromkeys(self._logged, 0)
        super().log(logs, *args, **kwargs)

    @property
    def pad_id(self) -> int:
        tok = self.processing_class
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def removal_schedule(cfg: ICoTConfig, steps_per_epoch: int) -> RemovalSchedule:
    """The step-based schedule, or the official per-epoch one with `steps_per_epoch` optimizer steps."""
    every = cfg.remove_every_steps
    if every is None:
        every = steps_per_removed_token(steps_per_epoch, cfg.remove_per_epoch)
    return RemovalSchedule(every, cfg.remove_start_from, cfg.remove_all_when_remove_beyond)


def _check_reaches_end(schedule: RemovalSchedule, longest: int, planned: int) -> int | None:
    step = schedule.first_step_removing(longest)
    if step is None or step >= planned:
        log.warning("the schedule removes the longest CoT (%d tokens) only at step %s, after the last step (%d): "
                    "the final model still writes part of its CoT", longest, step, planned)
    return step


def train_icot(cfg: ICoTConfig, callbacks: list | None = None) -> Path:
    """Train (or continue, or leave a finished run as it is), save the final HF model to output_dir/model,
    return that path. Under a distributed launch every rank calls this; the main process writes the files."""
    from mentalese.methods.sft import prepare_model, save_sft_model

    get_benchmark(cfg.task)  # a typo writes nothing

    def build_trainer():
        from datasets import Dataset

        with cfg.main_process_first(local=cfg.save_on_each_node, desc="building the model"):  # tiny-*: once
            model, tokenizer = prepare_model(cfg)
        rows, counts = build_icot_rows(cfg, tokenizer)
        dataset = Dataset.from_list([r.to_dict() for r in rows])
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        per_epoch = max(math.ceil(len(rows) / (cfg.per_device_train_batch_size * cfg.world_size))
                        // cfg.gradient_accumulation_steps, 1)
        schedule = removal_schedule(cfg, per_epoch)
        trainer = ICoTTrainer(model=model, args=cfg, train_dataset=dataset, processing_class=tokenizer,
                              data_collator=ICoTCollator(pad), callbacks=callbacks, icot_args=cfg,
                              schedule=schedule)
        planned = cfg.max_steps if cfg.max_steps > 0 else int(math.ceil(cfg.num_train_epochs * per_epoch))
        all_removed_at = _check_reaches_end(schedule, counts["longest_cot_tokens"], planned)
        metrics = {**counts, "steps_per_epoch": per_epoch, "steps_per_removed_token": schedule.steps_per_removed_token,
                   "all_cot_removed_from_step": all_removed_at}
        trainer.run_metrics = metrics  # the trainer adds the removal counts once training ends
        return trainer, metrics

    return train_resuming(cfg, build_trainer, lambda trainer, final: save_sft_model(trainer, cfg, final),
                          resume=cfg.resume, config=cfg)

