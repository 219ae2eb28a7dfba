"""The BoLT driver: warm start on teacher thoughts, then EM iterations, each in its own directory.

    output_dir/
      config.yaml, base_model/ (the base model with the four BoLT tokens), teacher/ (thoughts + cache)
      iter_0/      mstep/ (warm start, or the raw baseline), eval/, done.json
      iter_<i>/    estep/ (shards + manifest, proposals from iteration i-1's model), mstep/, eval/, done.json
      summary.json one row per iteration: accuracy, E-step ELBO and counts

mode=synthesize runs the teacher stage alone (teacher/; `synthesize_teacher`), for a later run to reuse.
Every stage leaves a completion marker (manifest shards, mstep/train_done.json, eval/metrics.json,
iter_*/done.json); a rerun of the same command skips finished stages and resumes the rest.
Documents with teacher thoughts keep them in every iteration; the E-step infers the others.

Several processes (`torchrun --nproc_per_node N -m mentalese train <bolt recipe> ...`): every process runs
`run_bolt`. The main process alone writes files (config, base model, teacher thoughts, done
markers, summary) and the others wait at a barrier before they read them; whether a stage is
finished is decided once, by the main process, and broadcast, so every process takes the same
path and calls the collectives (M-step `Trainer`, `run_estep`, `evaluate`) with the same arguments.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Sequence

from mentalese.config import save_config
from mentalese.decoding.loop import DecodeConfig
from mentalese.errors import MentaleseError
from mentalese.evaluation.harness import evaluate
from mentalese.atomic_files import write_text_atomic
from mentalese.evaluation.run import process_device
from mentalese.sharding import Processes, current_processes, resolve_processes
from mentalese.methods.bolt.config import BoltConfig
from mentalese.methods.bolt.data_format import PRIOR, SOL, BoltTokenIds, Chunk, add_bolt_tokens, chunk_corpus
from mentalese.methods.bolt.estep import read_estep, run_estep, thoughts_from
from mentalese.methods.bolt.mstep import corpus_rows, train_on_corpus
from mentalese.methods.bolt.synthesis import Teacher, ThoughtCache, make_teacher, synthesize_thoughts
from mentalese.methods.bolt.toy import TOY_PROMPT, ToyCorpusConfig, derivation_teacher, toy_documents
from mentalese.models.loading import load_model_and_tokenizer
from mentalese.models.tiny import resolve_base_model
from mentalese.tasks.registry import get_benchmark, load_benchmark, render_prompt

log = logging.getLogger(__name__)
TOY_CORPUS = "toy-chain"


def bolt_processes(cfg: BoltConfig) -> Processes:
    """The launched process group; set up as the M-step's Trainer sets it up (gloo with use_cpu)."""
    cfg.device  # noqa: B018 -- TrainingArguments initialises torch.distributed under a multi-process launch
    return current_processes()


def main_says(procs: Processes, value):
    """The main process's `value` on every process: one decision (e.g. "is this stage done") for all."""
    if procs.world_size == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def load_documents(cfg: BoltConfig) -> list[tuple[str, str]]:
    if cfg.corpus == TOY_CORPUS:
        docs = toy_documents(ToyCorpusConfig(**cfg.toy_options))
    else:
        path = Path(cfg.corpus)
        if not path.is_file():
            raise MentaleseError(f"corpus {cfg.corpus!r} not found (a JSONL file with 'text', or {TOY_CORPUS!r})")
        docs = []
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f):
                if line.strip():
                    try:
                        row = json.loads(line)
                        docs.append((str(row.get("id", n)), row["text"]))
                    except (json.JSONDecodeError, KeyError, TypeError):
                        raise MentaleseError(f"{path}:{n + 1}: expected a JSON object with a 'text' field") from None
    return docs[:cfg.corpus_limit] if cfg.corpus_limit else docs


def prepare_base_model(cfg: BoltConfig, out: Path, processes: Processes | str | None = None) -> Path:
    """out/base_model: the base model (tiny ones built here) with the BoLT tokens added.
    With `processes`, the main process writes it and every process returns once it exists."""
    procs = resolve_processes(processes)
    base = out / "base_model"
    if procs.is_main and not (base / "done.json").exists():
        path = resolve_base_model(cfg.model_name_or_path, out, cfg.seed, cfg.tiny_model_options)
        model, tokenizer = load_model_and_tokenizer(path, dtype=cfg.dtype, device="cpu")
        add_bolt_tokens(model, tokenizer)
        model.save_pretrained(base)
        tokenizer.save_pretrained(base)
        write_text_atomic(base / "done.json", "{}")
    procs.barrier()
    return base


def teacher_for(cfg: BoltConfig) -> Teacher:
    if cfg.teacher.kind == "function" and cfg.corpus == TOY_CORPUS:
        return derivation_teacher(ToyCorpusConfig(**cfg.toy_options).modulus)
    return make_teacher(cfg.teacher)


def teacher_thoughts(cfg: BoltConfig, documents: Sequence[Sequence[Chunk]], out: Path,
                     processes: Processes | str | None = None) -> dict[str, str]:
    """out/teacher/thoughts.json (synthesised once, then read). With `processes`, the main process
    asks the teacher and writes the files; every process returns the thoughts once they exist."""
    procs = resolve_processes(processes)
    path = out / "teacher" / "thoughts.json"
    thoughts = None
    if procs.is_main and not path.exists():
        teacher_cfg = cfg.teacher
        if cfg.corpus == TOY_CORPUS and teacher_cfg.kind == "function":
            teacher_cfg = dataclasses.replace(teacher_cfg, prompt=TOY_PROMPT)  # what the derivation teacher parses
        thoughts, stats = synthesize_thoughts(documents, teacher_for(cfg), teacher_cfg,
                                              ThoughtCache(out / "teacher" / "cache"))
        if stats["failed"]:
            log.warning("teacher: %d chunks without a thought stay raw in the warm start", stats["failed"])
        write_text_atomic(out / "teacher" / "stats.json", json.dumps(stats, indent=2))
        write_text_atomic(path, json.dumps(thoughts))
    procs.barrier()
    return thoughts if thoughts is not None else json.loads(path.read_text())


def prompt_layout(tokenizer, template: str, latent: bool) -> str:
    """BOS (when the tokenizer does not add one) + `template` [+ SOL <|prior|>: a latent model writes its
    thought first, then EOL and the answer, in prior order]."""
    bos = tokenizer.bos_token or ""
    adds_bos = bos and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
    return ("" if adds_bos else bos) + template + (SOL + PRIOR if latent else "")


def eval_prompt(cfg: BoltConfig, tokenizer, latent: bool) -> str:
    """Template: BOS (when the tokenizer does not add one) + few-shot + prompt [+ SOL <|prior|>]."""
    shots = ""
    if cfg.eval_few_shot:
        for ex in load_benchmark(cfg.task, "train", limit=cfg.eval_few_shot, **cfg.task_options):
            shots += render_prompt(cfg.eval_prompt, ex.question) + f"{ex.cot_text()} The answer is: {ex.answer}\n\n"
    return prompt_layout(tokenizer, shots + cfg.eval_prompt, latent)


def evaluate_model(cfg: BoltConfig, model_dir: Path, out_dir: Path, latent: bool,
                   processes: Processes | str | None = "auto") -> dict:
    """Evaluate (or read the finished evaluation of) `model_dir`; a collective under a multi-process launch
    ("auto": the launched process group, which run_bolt has set up)."""
    procs = resolve_processes(processes)
    if main_says(procs, (out_dir / "metrics.json").exists()):
        return json.loads((out_dir / "metrics.json").read_text())
    model, tokenizer = load_model_and_tokenizer(model_dir, dtype=cfg.dtype, device=_device(cfg, procs))
    examples = load_benchmark(cfg.task, cfg.eval_split, limit=cfg.eval_limit, **cfg.task_options)
    stop = [BoltTokenIds.from_tokenizer(tokenizer).sol] if latent else []  # the next chunk's thought
    dcfg = DecodeConfig(max_new_tokens=cfg.eval_max_new_tokens, batch_size=cfg.eval_batch_size, stop_token_ids=stop,
                        add_special_tokens=True)
    return evaluate(model, tokenizer, examples, get_benchmark(cfg.task), dcfg,
                    prompt=eval_prompt(cfg, tokenizer, latent), output_dir=out_dir, processes=procs)


def _device(cfg: BoltConfig, procs: Processes) -> str:
    """Where to decode: the CPU with use_cpu, else this process's GPU (cuda:LOCAL_RANK under a launch)."""
    return "cpu" if cfg.use_cpu else process_device("auto", procs)


def _mstep(cfg: BoltConfig, init: Path, documents, thoughts: dict, out: Path, seed: int,
           procs: Processes) -> Path:
    from mentalese.methods.bolt.mstep import is_done
    from mentalese.models.loading import load_tokenizer

    if main_says(procs, is_done(out)):  # one decision for every process (train_on_corpus is a collective)
        return out / "model"
    rows, counts = corpus_rows(load_tokenizer(init), documents, thoughts, cfg.prior_probability, cfg.seq_len, seed)
    return train_on_corpus(cfg, init, rows, out, dtype=cfg.dtype, counts=counts)


def synthesize_teacher(cfg: BoltConfig) -> dict:
    """mode=synthesize: the teacher thoughts of the corpus alone (output_dir/teacher, cached), the stage a
    later run with the same output_dir reuses. Returns the counts."""
    docs, skipped = chunk_corpus(load_documents(cfg), cfg.chunk_mean_sentences, cfg.chunk_max_sentences)
    docs = docs if cfg.teacher_docs is None else docs[:cfg.teacher_docs]
    procs = bolt_processes(cfg)  # under a multi-process launch the main process asks the teacher
    thoughts = teacher_thoughts(cfg, docs, Path(cfg.output_dir), procs)
    return {"documents": len(docs), "skipped_empty_documents": skipped, "thoughts": len(thoughts),
            "chunks": sum(len(d) for d in docs), "output": f"{cfg.output_dir}/teacher"}


def result_dir(cfg: BoltConfig) -> Path:
    """Where the run's result lies: the last model run_bolt trains (teacher/ for mode=synthesize)."""
    out = Path(cfg.output_dir)
    if cfg.mode == "synthesize":
        return out / "teacher"
    if cfg.mode == "raw":
        return out / "iter_0" / "mstep" / "model"
    if cfg.mode == "em" and cfg.em_iterations > 0:
        return out / f"iter_{cfg.em_iterations}" / "mstep" / "model"
    return Path(cfg.warm_start_model) if cfg.warm_start_model else out / "iter_0" / "mstep" / "model"


def run_bolt(cfg: BoltConfig) -> dict:
    """Run (or resume) a BoLT experiment; returns the summary (also written to summary.json).
    Under a multi-process launch every process calls this and gets the same summary.
    mode=synthesize runs the teacher stage alone and returns its counts (`synthesize_teacher`)."""
    if cfg.mode == "synthesize":
        return synthesize_teacher(cfg)
    procs = bolt_processes(cfg)
    out = Path(cfg.output_dir)
    if procs.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    raw_docs = load_documents(cfg)
    documents, skipped = chunk_corpus(raw_docs, cfg.chunk_mean_sentences, cfg.chunk_max_sentences)
    if skipped:
        log.warning("skipped %d empty documents", skipped)
    if not documents:
        raise MentaleseError("the corpus has no non-empty documents")
    base = prepare_base_model(cfg, out, procs)
    rows = []

    # iteration 0: the raw baseline, or the warm start on teacher thoughts
    it0 = out / "iter_0"
    if cfg.mode == "raw":
        model = _mstep(cfg, base, documents, {}, it0 / "mstep", cfg.seed, procs)
        rows.append({"iteration": 0, "kind": "raw", **_metrics(evaluate_model(cfg, model, it0 / "eval", False))})
        return _write_summary(out, rows, skipped, procs)
    with_teacher = documents if cfg.teacher_docs is None else documents[:cfg.teacher_docs]
    fixed = teacher_thoughts(cfg, with_teacher, out, procs)
    model = (Path(cfg.warm_start_model) if cfg.warm_start_model
             else _mstep(cfg, base, documents, fixed, it0 / "mstep", cfg.seed, procs))
    rows.append({"iteration": 0, "kind": "warm start", **_metrics(evaluate_model(cfg, model, it0 / "eval", True))})
    if cfg.mode == "teacher":
        return _write_summary(out, rows, skipped, procs)

    to_infer = documents[len(with_teacher):]
    if not to_infer:
        raise MentaleseError("every document has teacher thoughts: nothing for the E-step (set teacher_docs)")
    for i in range(1, cfg.em_iterations + 1):
        it = out / f"iter_{i}"
        proposer, tokenizer = load_model_and_tokenizer(model, dtype=cfg.dtype, device=_device(cfg, procs))
        manifest = run_estep(proposer, tokenizer, to_infer, it / "estep", cfg.estep, BoltTokenIds.from_tokenizer(tokenizer),
                             processes=procs)
        del proposer
        thoughts = {**thoughts_from(read_estep(it / "estep")), **fixed}
        init = base if cfg.restart_from_base else model
        model = _mstep(cfg, init, documents, thoughts, it / "mstep", cfg.seed + i, procs)
        metrics = _metrics(evaluate_model(cfg, model, it / "eval", True))
        rows.append({"iteration": i, "kind": f"EM K={cfg.estep.num_samples} {cfg.estep.selection}", **metrics,
                     **{f"proposer_{k}": v for k, v in manifest["summary"].items()}})
        if procs.is_main:
            write_text_atomic(it / "done.json", json.dumps(rows[-1], indent=2))
    return _write_summary(out, rows, skipped, procs)


def _metrics(m: dict) -> dict:
    return {k: m[k] for k in ("accuracy", "accuracy_flexible", "mean_generated_tokens", "num_examples")}


def _write_summary(out: Path, rows: list[dict], skipped_docs: int, procs: Processes) -> dict:
    summary = {"iterations": rows, "skipped_empty_documents": skipped_docs}
    if procs.is_main:
        write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, default=str))
    procs.barrier()  # every process returns once summary.json exists
    return summary

