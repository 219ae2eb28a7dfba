"""The `mentalese bolt-*` commands (wired in mentalese/cli.py)."""

from __future__ import annotations

import json


def run(command: str, recipe: str | None, overrides: list[str], load_config) -> None:
    from mentalese.recipes import resolve_recipe

    if command == "bolt-em":
        from mentalese.sharding import current_processes
        from mentalese.methods.bolt.config import BoltConfig
        from mentalese.methods.bolt.em import run_bolt

        summary = run_bolt(load_config(BoltConfig, resolve_recipe(recipe), overrides))
        if current_processes().is_main:  # every process returns the summary; print it once
            print(json.dumps(summary, indent=2, default=str))
    elif command == "bolt-synthesize":
        from pathlib import Path

        from mentalese.methods.bolt.config import BoltConfig
        from mentalese.methods.bolt.data_format import chunk_corpus
        from mentalese.methods.bolt.em import bolt_processes, load_documents, teacher_thoughts

        cfg = load_config(BoltConfig, resolve_recipe(recipe), overrides)
        docs, skipped = chunk_corpus(load_documents(cfg), cfg.chunk_mean_sentences, cfg.chunk_max_sentences)
        docs = docs if cfg.teacher_docs is None else docs[:cfg.teacher_docs]
        procs = bolt_processes(cfg)  # under a multi-process launch the main process asks the teacher
        thoughts = teacher_thoughts(cfg, docs, Path(cfg.output_dir), procs)
        if procs.is_main:
            print(json.dumps({"documents": len(docs), "skipped_empty_documents": skipped, "thoughts": len(thoughts),
                              "chunks": sum(len(d) for d in docs), "output": f"{cfg.output_dir}/teacher"}, indent=2))
    elif command == "bolt-toy":
        from mentalese.methods.bolt.experiment import ToyExperimentConfig, run_toy_experiment

        print(f"report: {run_toy_experiment(load_config(ToyExperimentConfig, recipe, overrides))}")
    elif command == "bolt-bench":
        from mentalese.methods.bolt.bench import EStepBenchConfig, run_estep_bench

        print(json.dumps(run_estep_bench(load_config(EStepBenchConfig, recipe, overrides)), indent=2))
    else:
        raise ValueError(command)
