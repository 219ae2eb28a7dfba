"""The demo's `soft-thinking` row: one toy thinking model, five ways to decode it.

Trains (or reuses) the toy thinking model of `thinking_toy.py` and evaluates it with greedy
decoding, token sampling (T 0.6, top-k 30, top-p 0.95), vanilla soft thinking, and the Dirichlet
and Gumbel-Softmax variants (paper defaults). Stochastic rows are decoded `num_samples` times per
problem: accuracy is pass@1 averaged over samples, and pass@k is reported in the notes. The report
gains the pass@k curves and the single-threadedness evidence: JS divergences and the logit lens.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mentalese.analysis.plots import read_loss_curve
from mentalese.analysis.soft_commands import (
    SoftAnalysisConfig,
    correct_counts,
    decoding_for,
    pass_at_k_curve,
    probe,
    run_soft_js,
    run_soft_logit_lens,
)
from mentalese.analysis.soft_plots import plot_pass_at_k
from mentalese.atomic_files import write_text_atomic
from mentalese.commands.demo.shared import RowResult, test_examples
from mentalese.commands.demo.sft_rows import PROGRESS_BAR
from mentalese.config import load_config
from mentalese.evaluation.harness import evaluate
from mentalese.methods.sft import SFTConfig
from mentalese.methods.thinking_toy import THINK_PROMPT, train_thinking_model
from mentalese.models.loading import load_model_and_tokenizer
from mentalese.recipes import resolve_recipe
from mentalese.tasks.registry import get_benchmark

if TYPE_CHECKING:
    from mentalese.commands.demo.run import DemoConfig

DECODINGS = {"greedy": "Think greedy", "sampling": "Think sampling", "soft": "Soft thinking",
        "dirichlet": "Soft + Dirichlet", "gumbel": "Soft + Gumbel"}


def thinking_model(cfg: DemoConfig, run_dir: Path) -> tuple[Path, float | None]:
    """Train the toy thinking model once (the CoT-SFT recipe's optimiser settings); reuse it after.

    It trains for half of `train_steps` on purpose: fully trained it solves ~100% greedily and every
    strategy ties; half-trained (measured ~43% greedy at 400 steps) leaves room for pass@k to differ.
    """
    model_dir, seconds_file = run_dir / "model", run_dir / "train_seconds.txt"
    if (model_dir / "config.json").exists():
        return model_dir, float(seconds_file.read_text()) if seconds_file.exists() else None
    sft = load_config(SFTConfig, resolve_recipe("sft/chain_cot"), [
        f"output_dir={run_dir}", f"model_name_or_path=tiny-{cfg.arch}", f"max_steps={max(1, cfg.train_steps // 2)}",
        f"seed={cfg.seed}", f"task_options={json.dumps(cfg.task_options('train'))}", "save_steps=100000", PROGRESS_BAR])
    start = time.perf_counter()
    train_thinking_model(sft)
    seconds = time.perf_counter() - start
    write_text_atomic(seconds_file, f"{seconds:.2f}\n")
    return model_dir, seconds


def soft_thinking_rows(cfg: DemoConfig, run_dir: Path) -> list[RowResult]:
    model_dir, train_seconds = thinking_model(cfg, run_dir)
    model, tokenizer = load_model_and_tokenizer(model_dir, dtype="float32", device="auto")
    examples = test_examples(cfg)[: 100 if cfg.quick else 200]
    num_samples = 4 if cfg.quick else 8
    analysis = SoftAnalysisConfig(model=str(model_dir), prompt=THINK_PROMPT, max_new_tokens=64, batch_size=128,
                                  num_samples=num_samples, seed=cfg.seed, output_dir=str(run_dir / "analysis"))
    results, curves = [], {}
    for name, label in DECODINGS.items():
        n = 1 if name == "greedy" else num_samples
        eval_dir = run_dir / f"eval_{name}"
        decode_config, strategy = decoding_for(name, analysis, tokenizer)
        metrics = evaluate(model, tokenizer, examples, get_benchmark("chain"), decode_config, strategy,
                           num_samples=n, prompt=THINK_PROMPT, output_dir=eval_dir)
        metrics["mean_thinking_tokens"] = mean_thinking_tokens(eval_dir / "predictions.jsonl")
        curves[label] = pass_at_k_curve(correct_counts(eval_dir / "predictions.jsonl"), n) if n > 1 else []
        notes = f"thinking {metrics['mean_thinking_tokens']:.1f} tok"
        if n > 1:
            notes += f"; pass@{n} {100 * curves[label][-1]:.1f}% (n={n})"
        results.append(RowResult(label, metrics, eval_dir, train_seconds if name == "greedy" else None,
                                 read_loss_curve(run_dir) if name == "greedy" else ([], []), notes))
    plot_pass_at_k({k: v for k, v in curves.items() if v}, run_dir / "analysis" / "passk.png",
                   f"pass@k, chain test ({len(examples)} problems)")
    probe_examples = examples[: 10 if cfg.quick else 20]
    summary = probe(analysis, model, tokenizer, probe_examples)
    js, lens = run_soft_js(analysis, summary), run_soft_logit_lens(analysis, summary)
    results[-1].report_section = report_section(run_dir, js, lens, len(examples))
    return results


def mean_thinking_tokens(predictions_file: Path) -> float:
    with predictions_file.open() as f:
        steps = [s["info"]["thinking_steps"] for line in f for s in json.loads(line)["samples"]]
    return sum(steps) / len(steps)


def report_section(run_dir: Path, js: dict, lens: dict, num_problems: int) -> str:
    rel = run_dir.name + "/analysis"
    mean, share = js["mean"], lens["share_top1"]
    return f"""The `soft-thinking` rows share one model trained to write `<think>steps</think>` before the answer,
decoded five ways on {num_problems} test problems (see docs/soft_thinking.md).

![pass@k]({rel}/passk.png)

Single-threadedness, over {js['num_steps']} thinking steps of {js['num_prompts']} problems: the next-token
distribution after a concept token against the one after its top-1 token alone, JS(soft, top-1) =
{mean['js_soft_top1']:.2e}; against its top-2 token, JS(soft, top-2) = {mean['js_soft_top2']:.4f};
JS(top-1, top-2) = {mean['js_top1_top2']:.4f} (nats; the maximum is ln 2 = 0.693).

![JS divergence]({rel}/js.png)

Logit lens of a {lens['mix_weights'][0]}/{lens['mix_weights'][1]} mixture of the top-1 and top-2 tokens: share of
the top-1 path by layer (embeddings first) {', '.join(f'{s:.2f}' for s in share)}; over the
{lens['num_divergent_steps']} steps where the two pure inputs predict different tokens
{', '.join(f'{s:.2f}' for s in lens['share_top1_divergent'])}.

![logit lens]({rel}/logit_lens.png)
"""

