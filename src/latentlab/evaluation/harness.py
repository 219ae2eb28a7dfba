"""The evaluation harness: any model, any registered benchmark, any decoding setting.

`evaluate(...)` decodes every example (`num_samples` times when sampling), extracts answers
strictly and flexibly, grades them with the benchmark's grader and writes, into `output_dir`:

    predictions.jsonl   one line per example: reference, every sample's text, extractions, grades
    metrics.json        accuracy (strict and flexible), pass@k, maj@n, tokens, latency, throughput

Both files are written to a temporary name first and renamed, so no half-written output remains.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from latentlab.decoding.loop import DecodeConfig, DecodeResult, decode
from latentlab.decoding.soft_thinking import SoftThinkingConfig
from latentlab.decoding.strategies import InputStrategy
from latentlab.errors import LatentLabError
from latentlab.evaluation.extraction import EXTRACTION_VERSION, extract
from latentlab.evaluation.grading import GRADER_VERSION, grade
from latentlab.evaluation.metrics import majority_vote, mean_pass_at_k, normalise_number
from latentlab.tasks.example import Example
from latentlab.tasks.registry import BenchmarkSpec, render_prompt


@dataclass
class EvalConfig:
    """`latentlab eval`: which model, which benchmark split, how to decode, where to write."""

    model: str = field(default="", metadata={"help": "hub name or local path of a causal LM"})
    benchmark: str = field(default="chain", metadata={"help": "registered benchmark name"})
    split: str | None = field(default=None, metadata={"help": "split; default: the benchmark's default"})
    limit: int | None = field(default=None, metadata={"help": "first N examples only"})
    data_dir: str | None = field(default=None, metadata={"help": "benchmark data directory"})
    task_options: dict = field(default_factory=dict, metadata={"help": "options for synthetic benchmarks"})
    prompt: str | None = field(default=None, metadata={"help": "prompt template with {question}; default: spec's"})
    num_samples: int = field(default=1, metadata={"help": "samples per example (pass@k, maj@n)"})
    dtype: str = field(default="auto", metadata={"help": "model dtype"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:1, auto"})
    output_dir: str = field(default="runs/eval", metadata={"help": "where predictions and metrics go"})
    decode: DecodeConfig = field(default_factory=DecodeConfig, metadata={"help": "decoding settings"})
    soft_thinking: SoftThinkingConfig | None = field(default=None, metadata={
        "help": "decode with soft thinking (vanilla/dirichlet/gumbel); see docs/soft_thinking.md"})

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise LatentLabError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.limit is not None and self.limit < 1:
            raise LatentLabError(f"limit must be >= 1, got {self.limit}")


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def grade_sample(res: DecodeResult, example: Example, spec: BenchmarkSpec) -> dict[str, Any]:
    strict = extract(res.text, spec.extraction, "strict")
    flexible = extract(res.text, spec.extraction, "flexible")
    return {
        "text": res.text,
        "pred_strict": strict,
        "pred_flexible": flexible,
        "correct_strict": grade(strict, example.answer, spec.grader),
        "correct_flexible": grade(flexible, example.answer, spec.grader),
        "num_tokens": res.num_tokens,
        "num_steps": res.num_steps,
        "stop_reason": res.stop_reason,
        "error": res.error,
        **({"info": res.info} if res.info else {}),
    }


def evaluate(
    model,
    tokenizer,
    examples: Sequence[Example],
    spec: BenchmarkSpec,
    decode_config: DecodeConfig | None = None,
    strategy: InputStrategy | None = None,
    num_samples: int = 1,
    prompt: str | None = None,
    output_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Decode, grade and summarise; returns the metrics dict (also written when output_dir is set)."""
    if not examples:
        raise LatentLabError("no examples to evaluate")
    decode_config = decode_config or DecodeConfig()
    if num_samples > 1 and strategy is None and decode_config.greedy:
        raise LatentLabError("num_samples > 1 needs sampling (decode.do_sample=true, temperature > 0)")
    template = prompt or spec.prompt
    prompts = [render_prompt(template, ex.question) for ex in examples for _ in range(num_samples)]
    start = time.perf_counter()
    results = decode(model, tokenizer, prompts, decode_config, strategy, progress=progress)
    wall = time.perf_counter() - start

    records, correct_counts = [], []
    for i, ex in enumerate(examples):
        samples = [grade_sample(r, ex, spec) for r in results[i * num_samples: (i + 1) * num_samples]]
        correct_counts.append(sum(s["correct_strict"] for s in samples))
        record = {"id": ex.id, "question": ex.question, "answer": ex.answer, "samples": samples}
        if num_samples > 1:
            norm = normalise_number if spec.grader == "numeric" else None
            voted = majority_vote([s["pred_strict"] for s in samples], normalise=norm)
            record.update(majority=voted, majority_correct=grade(voted, ex.answer, spec.grader))
        records.append(record)

    n_total = len(results)
    total_tokens = sum(r.num_tokens for r in results)
    metrics: dict[str, Any] = {
        "benchmark": spec.name,
        "benchmark_version": spec.version,
        "extraction": spec.extraction,
        "extraction_version": EXTRACTION_VERSION,
        "grader": spec.grader,
        "grader_version": GRADER_VERSION,
        "num_examples": len(examples),
        "num_samples": num_samples,
        "accuracy": sum(s["correct_strict"] for r in records for s in r["samples"]) / n_total,
        "accuracy_flexible": sum(s["correct_flexible"] for r in records for s in r["samples"]) / n_total,
        "mean_generated_tokens": total_tokens / n_total,
        "mean_decode_steps": sum(r.num_steps for r in results) / n_total,
        "latency_per_example_s": sum(r.latency_s for r in results) / n_total,
        "wall_time_s": wall,
        "throughput_examples_per_s": n_total / wall,
        "throughput_tokens_per_s": total_tokens / wall,
        "num_errors": sum(r.error is not None for r in results),
        "num_truncated": sum(r.stop_reason == "length" for r in results),
        "prompt": template,
    }
    k = 1
    while k <= num_samples and num_samples > 1:
        metrics[f"pass@{k}"] = mean_pass_at_k(correct_counts, num_samples, k)
        k *= 2
    if num_samples > 1:
        metrics[f"maj@{num_samples}"] = sum(r["majority_correct"] for r in records) / len(records)
    if output_dir is not None:
        out = Path(output_dir)
        write_atomic(out / "predictions.jsonl", "".join(json.dumps(r) + "\n" for r in records))
        write_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
