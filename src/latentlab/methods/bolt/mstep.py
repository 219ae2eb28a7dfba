"""BoLT's M-step: continued pretraining on the thought-augmented corpus with transformers `Trainer`.

    rows = corpus_rows(tokenizer, documents, thoughts, cfg)   # packed, loss on every token
    model_dir = train_on_corpus(cfg, init_model_dir, rows, out_dir)

`out_dir` holds checkpoint-*/ (training resumes from the last one), model/ (final weights +
tokenizer), train_metrics.json and done.json (written last: its presence means the step finished).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Sequence

from transformers import Trainer, TrainingArguments, default_data_collator
from transformers.trainer_utils import get_last_checkpoint

from latentlab.evaluation.harness import write_atomic
from latentlab.methods.bolt.data_format import BoltTokenIds, Chunk, document_ids, pack_sequences
from latentlab.models.loading import load_model_and_tokenizer

log = logging.getLogger(__name__)


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
    return (out_dir / "done.json").exists()


def train_on_corpus(cfg: TrainingArguments, init_model_dir: str | Path, rows: list[dict], out_dir: str | Path,
                    dtype: str = "float32", counts: dict | None = None, callbacks: list | None = None,
                    **changes) -> Path:
    """Train from `init_model_dir` on `rows`; returns out_dir/model. Finished steps are not redone.
    Under a distributed launch every rank calls this; files are written by the main process only."""
    from datasets import Dataset

    out = Path(out_dir)
    if is_done(out):
        return out / "model"
    out.mkdir(parents=True, exist_ok=True)
    args = trainer_arguments(cfg, out, **changes)
    model, tokenizer = load_model_and_tokenizer(init_model_dir, dtype=dtype, device=str(args.device))
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                      data_collator=default_data_collator, processing_class=tokenizer, callbacks=callbacks)
    last = get_last_checkpoint(str(out))
    if last:
        log.info("M-step: resuming from %s", last)
    result = trainer.train(resume_from_checkpoint=last)
    trainer.save_model(str(out / "model"))
    if args.should_save:
        tokenizer.save_pretrained(str(out / "model"))
        trainer.state.save_to_json(str(out / "trainer_state.json"))
        write_atomic(out / "train_metrics.json",
                     json.dumps({**result.metrics, **(counts or {}), "resumed_from": last}, indent=2))
        write_atomic(out / "done.json", "{}")
    trainer.accelerator.wait_for_everyone()  # every rank returns once done.json exists
    return out / "model"
