"""BoLT's M-step: continued pretraining on the thought-augmented corpus with transformers `Trainer`.

    rows = corpus_rows(tokenizer, documents, thoughts, cfg)   # packed, loss on every token
    model_dir = train_on_corpus(cfg, init_model_dir, rows, out_dir)

`out_dir` holds checkpoint-*/ (training resumes from the last complete one), model/ (final weights +
tokenizer), trainer_state.json, train_metrics.json and train_done.json (written last: its presence
means the step finished; `is_done` also accepts the done.json of older runs). The start/resume/finish
rules are those of every training in the library (`methods/checkpoints.py`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from transformers import Trainer, TrainingArguments, default_data_collator

from mentalese.methods.bolt.data_format import BoltTokenIds, Chunk, document_ids, pack_sequences
from mentalese.methods.checkpoints import finished_run, train_resuming
from mentalese.models.loading import load_model_and_tokenizer


def corpus_rows(tokenizer, documents: Sequence[Sequence[Chunk]], thoughts: dict[str, str], prior_probability: float,
                seq_len: int, seed: int) -> tuple[list[dict], dict]:
    """Packed training rows and counts (documents, chunks with thoughts, tokens)."""
    tok = BoltTokenIds.from_tokenizer(tokenizer)
    docs = [document_ids(tokenizer, d, thoughts, prior_probability, seed, tok) for d in documents]
    rows = pack_sequences(docs, seq_len, tokenizer.pad_token_id)
    n_chunks = sum(len(d) for d in documents)
    counts = {"documents": len(docs), "chunks": n_chunks,
              "chunks_with_thought": sum(c.chunk_id in thoughts for d in documents for c in d),
              "tokens": sum(len(d) for d in docs), "sequences": len(rows)}
    return rows, counts


def trainer_arguments(cfg: TrainingArguments, output_dir: Path, **changes) -> TrainingArguments:
    """A plain `TrainingArguments` copy of `cfg`'s Trainer fields with a new output_dir."""
    kwargs = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainingArguments) if f.init}
    return TrainingArguments(**{**kwargs, "output_dir": str(output_dir), **changes})


def is_done(out_dir: Path) -> bool:
    """Whether the M-step in `out_dir` finished: its train_done.json, or done.json from runs before it."""
    return finished_run(out_dir) is not None or (Path(out_dir) / "done.json").exists()


def train_on_corpus(cfg: TrainingArguments, init_model_dir: str | Path, rows: list[dict], out_dir: str | Path,
                    dtype: str = "float32", counts: dict | None = None, callbacks: list | None = None,
                    **changes) -> Path:
    """Train from `init_model_dir` on `rows`; returns out_dir/model. A finished step is not redone, a killed
    one resumes (`train_resuming`). Under a distributed launch every rank calls this; the main process writes."""
    from datasets import Dataset

    if (Path(out_dir) / "done.json").exists():  # finished before train_done.json existed
        return Path(out_dir) / "model"
    args = trainer_arguments(cfg, Path(out_dir), **changes)

    def build_trainer():
        model, tokenizer = load_model_and_tokenizer(init_model_dir, dtype=dtype, device=str(args.device))
        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                          data_collator=default_data_collator, processing_class=tokenizer, callbacks=callbacks)
        return trainer, counts or {}

    def save_final(trainer: Trainer, final: Path) -> None:
        trainer.save_model(str(final))
        if args.should_save:
            trainer.processing_class.save_pretrained(str(final))

    return train_resuming(args, build_trainer, save_final)
