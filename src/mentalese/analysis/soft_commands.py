"""The soft-thinking analysis commands; each writes a JSON and a PNG into `output_dir`.

    mentalese analyze soft-js      model=runs/demo/soft-thinking/model   -> js.json, js.png
    mentalese analyze soft-logit-lens  model=...  mix_weights=[0.6,0.4]      -> logit_lens.json, logit_lens.png
    mentalese analyze soft-rouge   model=...                             -> rouge.json, rouge.png
    mentalese analyze soft-passk   model=...  num_samples=8              -> passk.json, passk.png

Strategy names used throughout: greedy, sampling (the papers' T 0.6 / top-k 30 / top-p 0.95), soft
(vanilla concept tokens), dirichlet, gumbel. `sampling` is the token sampling of every strategy but
greedy (for the soft ones: their answer tokens); it reaches them as the decode config's settings.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mentalese.analysis.single_thread import probe_soft_thinking, rouge_l, summarise_probes
from mentalese.analysis.soft_plots import plot_bars, plot_js_by_step, plot_logit_lens, plot_pass_at_k
from mentalese.config import save_config
from mentalese.decoding.loop import DecodeConfig, decode, stop_ids_for
from mentalese.decoding.sampling import SamplingConfig
from mentalese.decoding.soft_thinking import (
    SoftThinkingConfig,
    SoftThinkingStrategy,
    ThinkingTracker,
    papers_answer_sampling,
)
from mentalese.decoding.strategies import DiscreteStrategy, InputStrategy
from mentalese.errors import MentaleseError
from mentalese.evaluation.harness import evaluate
from mentalese.atomic_files import write_text_atomic
from mentalese.evaluation.metrics import pass_at_k
from mentalese.tasks.registry import get_benchmark, load_benchmark, render_prompt

STRATEGIES = ("greedy", "sampling", "soft", "dirichlet", "gumbel")
TOY_THINK_PROMPT = "{question}\n<think>"


def make_strategy(name: str, soft: SoftThinkingConfig, tokenizer) -> InputStrategy:
    """A strategy by name; plain decoding is wrapped to report thinking_steps like soft thinking does.
    Token sampling is the decode config's (see `decoding_for`)."""
    if name in ("greedy", "sampling"):
        return ThinkingTracker(DiscreteStrategy(), tokenizer, soft.think_close)
    if name in ("soft", "dirichlet", "gumbel"):
        return SoftThinkingStrategy(dataclasses.replace(soft, mode="vanilla" if name == "soft" else name), tokenizer)
    raise MentaleseError(f"unknown strategy {name!r}; choose from {STRATEGIES}")


@dataclass
class SoftAnalysisConfig:
    """Shared by soft-js, soft-logit-lens, soft-rouge and soft-passk."""

    model: str = field(default="", metadata={"help": "path/hub name of a model that thinks in <think>...</think>"})
    benchmark: str = field(default="chain", metadata={"help": "registered benchmark"})
    split: str | None = field(default="test", metadata={"help": "split"})
    limit: int = field(default=50, metadata={"help": "first N examples"})
    task_options: dict = field(default_factory=dict, metadata={"help": "options of synthetic benchmarks"})
    data_dir: str | None = field(default=None, metadata={"help": "benchmark data directory"})
    prompt: str = field(default=TOY_THINK_PROMPT, metadata={"help": "template; must end inside <think> for probes"})
    soft: SoftThinkingConfig = field(default_factory=SoftThinkingConfig, metadata={"help": "soft thinking settings"})
    sampling: SamplingConfig = field(default_factory=papers_answer_sampling, metadata={
        "help": "token sampling of every strategy but greedy (soft ones: answer tokens), passed as decode.*"})
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES[1:]), metadata={
        "help": "strategies compared by soft-rouge (against greedy) and soft-passk"})
    max_new_tokens: int = field(default=64, metadata={"help": "decode steps (thinking + answer)"})
    batch_size: int = field(default=64, metadata={"help": "rows per forward"})
    num_samples: int = field(default=8, metadata={"help": "samples per problem for soft-passk"})
    mix_weights: list[float] = field(default_factory=lambda: [0.6, 0.4], metadata={"help": "logit-lens mixture"})
    js_temperature: float = field(default=1.0, metadata={"help": "temperature of the compared next-token dists"})
    lens_ks: list[int] = field(default_factory=lambda: [10, 5], metadata={
        "help": "logit lens: top-k of the mixture, top-k of each pure input (paper: 10, 5)"})
    seed: int = field(default=0, metadata={"help": "sampling seed"})
    device: str = field(default="auto", metadata={"help": "cpu / cuda / auto"})
    dtype: str = field(default="float32", metadata={"help": "model dtype"})
    output_dir: str = field(default="runs/soft", metadata={"help": "where JSON and PNG go"})

    def __post_init__(self) -> None:
        for name in ("limit", "max_new_tokens", "batch_size", "num_samples"):
            if getattr(self, name) < 1:
                raise MentaleseError(f"{name} must be >= 1, got {getattr(self, name)}")
        if len(self.lens_ks) != 2 or min(self.lens_ks) < 1:
            raise MentaleseError(f"lens_ks must be two integers >= 1, got {self.lens_ks}")
        if len(self.mix_weights) != 2:
            raise MentaleseError(f"mix_weights must be two numbers, got {self.mix_weights}")
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise MentaleseError(f"unknown strategies {unknown}; choose from {STRATEGIES}")

    def decode_config(self, strategy: str) -> DecodeConfig:
        """Length, batch and seed, plus `sampling` unless the strategy is greedy."""
        sampling = {} if strategy == "greedy" else dataclasses.asdict(self.sampling)
        return DecodeConfig(max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, seed=self.seed, **sampling)


def decoding_for(name: str, cfg: SoftAnalysisConfig, tokenizer) -> tuple[DecodeConfig, InputStrategy]:
    """The decode config and the strategy of a named strategy: always use the two together."""
    return cfg.decode_config(name), make_strategy(name, cfg.soft, tokenizer)


def _load(cfg: SoftAnalysisConfig):
    from mentalese.models.loading import load_model_and_tokenizer

    if not cfg.model:
        raise MentaleseError("model=<path> is required (e.g. the demo's runs/demo/soft-thinking/model)")
    examples = load_benchmark(cfg.benchmark, cfg.split, data_dir=cfg.data_dir, limit=cfg.limit, **cfg.task_options)
    model, tokenizer = load_model_and_tokenizer(cfg.model, dtype=cfg.dtype, device=cfg.device)
    model.eval()
    return model, tokenizer, examples


def _write(cfg, name: str, result: dict[str, Any]) -> dict[str, Any]:
    out = Path(cfg.output_dir)
    save_config(cfg, out / f"{name}_config.yaml")
    write_text_atomic(out / f"{name}.json", json.dumps(result, indent=2))
    return result


def probe(cfg: SoftAnalysisConfig, model=None, tokenizer=None, examples=None) -> dict[str, Any]:
    """Probe every thinking step of every example (JS divergences and logit lens), summarised."""
    if model is None:
        model, tokenizer, examples = _load(cfg)
    close_id = SoftThinkingStrategy(cfg.soft, tokenizer).close_id
    stop_ids = [close_id, *stop_ids_for(model, tokenizer)]
    probes = []
    for ex in examples:
        ids = tokenizer(render_prompt(cfg.prompt, ex.question))["input_ids"]
        probes.append(probe_soft_thinking(model, ids, cfg.soft, stop_ids, cfg.max_new_tokens,
                                          tuple(cfg.mix_weights), cfg.js_temperature, tuple(cfg.lens_ks)))
    return summarise_probes(probes)


def run_soft_js(cfg: SoftAnalysisConfig, summary: dict | None = None) -> dict[str, Any]:
    summary = summary or probe(cfg)
    result = {k: summary[k] for k in ("num_prompts", "num_steps", "mean", "median", "by_step", "ln2")}
    plot_js_by_step(summary, Path(cfg.output_dir) / "js.png", f"next-token JS divergence, {cfg.benchmark}")
    return _write(cfg, "js", {"model": cfg.model, **result})


def run_soft_logit_lens(cfg: SoftAnalysisConfig, summary: dict | None = None) -> dict[str, Any]:
    summary = summary or probe(cfg)
    plot_logit_lens(summary["logit_lens"], cfg.mix_weights, Path(cfg.output_dir) / "logit_lens.png",
                    f"logit lens of a {cfg.mix_weights[0]}/{cfg.mix_weights[1]} two-token input")
    return _write(cfg, "logit_lens", {"model": cfg.model, "mix_weights": cfg.mix_weights, "lens_ks": cfg.lens_ks,
                                      "num_steps": summary["num_steps"], **summary["logit_lens"]})


def run_soft_rouge(cfg: SoftAnalysisConfig) -> dict[str, Any]:
    """Mean ROUGE-L of each strategy's recorded tokens against the greedy trace of the same prompt."""
    model, tokenizer, examples = _load(cfg)
    prompts = [render_prompt(cfg.prompt, ex.question) for ex in examples]
    greedy = decode(model, tokenizer, prompts, cfg.decode_config("greedy"))
    scores = {}
    for name in cfg.strategies:
        traces = decode(model, tokenizer, prompts, *decoding_for(name, cfg, tokenizer))
        per_row = [rouge_l(t.token_ids, g.token_ids) for t, g in zip(traces, greedy)]
        identical = sum(t.token_ids == g.token_ids for t, g in zip(traces, greedy))
        scores[name] = {"mean": sum(per_row) / len(per_row), "identical_to_greedy": identical / len(per_row)}
    plot_bars({k: v["mean"] for k, v in scores.items()}, "ROUGE-L vs greedy trace", Path(cfg.output_dir) / "rouge.png",
              f"trace similarity to greedy, {cfg.benchmark}")
    return _write(cfg, "rouge", {"model": cfg.model, "num_prompts": len(prompts), "rouge_l_vs_greedy": scores})


def pass_at_k_curve(correct_counts: list[int], n: int) -> list[float]:
    return [sum(pass_at_k(n, c, k) for c in correct_counts) / len(correct_counts) for k in range(1, n + 1)]


def correct_counts(predictions_file: Path) -> list[int]:
    with predictions_file.open() as f:
        return [sum(s["correct_strict"] for s in json.loads(line)["samples"]) for line in f]


def run_soft_passk(cfg: SoftAnalysisConfig) -> dict[str, Any]:
    """pass@k for k = 1..num_samples (unbiased estimator) of every strategy."""
    model, tokenizer, examples = _load(cfg)
    spec, out, curves, metrics = get_benchmark(cfg.benchmark), Path(cfg.output_dir), {}, {}
    for name in cfg.strategies:
        decode_config, strategy = decoding_for(name, cfg, tokenizer)
        m = evaluate(model, tokenizer, examples, spec, decode_config, strategy, num_samples=cfg.num_samples,
                     prompt=cfg.prompt, output_dir=out / f"passk_{name}")
        curves[name] = pass_at_k_curve(correct_counts(out / f"passk_{name}" / "predictions.jsonl"), cfg.num_samples)
        metrics[name] = {"accuracy": m["accuracy"], "mean_generated_tokens": m["mean_generated_tokens"]}
    plot_pass_at_k(curves, out / "passk.png", f"pass@k, {cfg.benchmark} ({len(examples)} problems)")
    return _write(cfg, "passk", {"model": cfg.model, "num_samples": cfg.num_samples, "pass_at_k": curves,
                                 "metrics": metrics})
