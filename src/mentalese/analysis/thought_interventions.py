"""`mentalese analyze thoughts`: do the thoughts matter? Interventions on the thoughts of any latent method.

    mentalese analyze thoughts model=runs/codi/model benchmark=chain limit=50
    mentalese analyze thoughts model=<thinking model> strategy=soft_thinking prompt='{question}\\n<think>'

The model's kind is recognised from its files: a saved CODI (codi_config.json) or Coconut (coconut_config.json)
model thinks in continuous thoughts, a BoLT latent model (api.load: the four BoLT tokens) in the discrete
thought it writes between `<|start_of_latent|><|prior|>` and `<|end_of_latent|>`, and a plain model with
`strategy=soft_thinking` in concept tokens between <think> and </think>.

Every example is decoded once with the method's own strategy (the thoughts are recorded: analysis/thought_traces.py),
then, for each intervention, its thoughts are changed and fed back through the same decode loop
(`ReplayThoughts`), and the answer is graded with the benchmark's extraction and grader:

    kept          the recorded thoughts (the replay reproduces the original decode)
    swap          another problem's thoughts (a fixed derangement of the examples, seed `seed`)
    zero          every thought set to the zero vector
    noise         every thought replaced by Gaussian noise of the same L2 norm
    truncate_j    only the first j thoughts, then the closing marker (j in `truncate`)

One teacher-forced pass per intervention over [prompt, markers, thoughts, closing marker, gold answer]
gives the gold answer's log-likelihood and the attention mass (eager attention) that the positions predicting
the answer put on the thought positions, per layer and averaged, next to the mass on as many prompt positions
(the last ones before the markers) as a reference. A "drop" is kept minus intervention: positive when the
intervention hurts. Output: thoughts.json (summary), thoughts_examples.jsonl (per example), thoughts.png,
config.yaml. docs/thought_interventions.md says how to read them.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch

from mentalese.analysis.thought_traces import (
    RECORD_KEY, ThoughtTrace, TraceRecorder, derangement, noised, replay, score_traces, swapped,
    trace_from_record, truncated, zeroed,
)
from mentalese.atomic_files import save_figure_atomic, write_text_atomic
from mentalese.config import build_config, save_config
from mentalese.decoding.loop import DecodeConfig, decode, stop_ids_for, tokenize_prompts
from mentalese.decoding.soft_thinking import SoftThinkingConfig
from mentalese.decoding.strategies import InputStrategy
from mentalese.errors import MentaleseError
from mentalese.evaluation.harness import grade_sample
from mentalese.methods.formatting import ANSWER_PROMPT
from mentalese.tasks.registry import get_benchmark, load_benchmark, render_prompt

INTERVENTIONS = ("kept", "swap", "zero", "noise", "truncate")
LATENT_CONFIGS = {"codi": "codi_config.json", "coconut": "coconut_config.json"}
MAX_AUTO_TRUNCATIONS = 16


@dataclass
class ThoughtsConfig:
    """`mentalese analyze thoughts`: which model and problems, which interventions, how to decode."""

    model: str = field(default="", metadata={"help": "saved CODI / Coconut / BoLT latent model, or a plain model "
                                                     "with strategy=soft_thinking"})
    benchmark: str = field(default="chain", metadata={"help": "registered benchmark"})
    split: str | None = field(default=None, metadata={"help": "split; default: the benchmark's default"})
    data_dir: str | None = field(default=None, metadata={"help": "benchmark data directory"})
    task_options: dict = field(default_factory=dict, metadata={"help": "options of synthetic benchmarks"})
    limit: int = field(default=50, metadata={"help": "first N examples"})
    prompt: str | None = field(default=None, metadata={
        "help": "prompt template with {question}; default: the benchmark's (a BoLT model's gets its layout)"})
    strategy: str = field(default="auto", metadata={
        "help": "auto (the model's own thoughts) | soft_thinking (concept tokens of a plain model)"})
    soft_thinking: SoftThinkingConfig | None = field(default=None, metadata={
        "help": "soft thinking settings (strategy=soft_thinking; default: the papers')"})
    interventions: list[str] = field(default_factory=lambda: list(INTERVENTIONS), metadata={
        "help": f"any of {', '.join(INTERVENTIONS)} (kept always runs: it is the baseline of every drop)"})
    truncate: list[int] = field(default_factory=list, metadata={
        "help": "thought counts j for truncate; empty: 0..n (n: most thoughts of any example; 16 values at most)"})
    answer_template: str | None = field(default=None, metadata={
        "help": "gold continuation after the closing marker, with {answer}; default by kind: "
                "'The answer is: {answer}' (soft thinking: after a newline; BoLT: with a final period)"})
    answer_eos: bool | None = field(default=None, metadata={
        "help": "append eos to the gold continuation; default: true, false for BoLT (its chunks go on)"})
    answer_min_tokens: int = field(default=32, metadata={
        "help": "replays decode at least this many steps after the thoughts (beyond decode.max_new_tokens)"})
    seed: int = field(default=0, metadata={"help": "seed of the swap derangement and the noise"})
    score_batch_size: int = field(default=8, metadata={"help": "rows per teacher-forced pass (attentions are T x T)"})
    attention: bool = field(default=True, metadata={
        "help": "measure attention mass (all layers' T x T probabilities at once: set false for long soft traces)"})
    dtype: str = field(default="auto", metadata={"help": "model dtype (CODI: auto = float32)"})
    device: str = field(default="auto", metadata={"help": "cpu / cuda / auto"})
    decode: DecodeConfig = field(default_factory=lambda: DecodeConfig(max_new_tokens=128), metadata={
        "help": "decoding of the original run (thought steps count) and of the answers"})
    output_dir: str = field(default="runs/thoughts", metadata={"help": "where thoughts.json/.png go"})

    def __post_init__(self) -> None:
        if isinstance(self.soft_thinking, dict):  # built in Python with a mapping
            self.soft_thinking = build_config(SoftThinkingConfig, self.soft_thinking, where="soft_thinking")
        if isinstance(self.decode, dict):
            self.decode = build_config(DecodeConfig, self.decode, where="decode")
        if self.strategy not in ("auto", "soft_thinking"):
            raise MentaleseError(f"strategy must be auto or soft_thinking, got {self.strategy!r}")
        unknown = [i for i in self.interventions if i not in INTERVENTIONS]
        if unknown:
            raise MentaleseError(f"unknown intervention {unknown[0]!r}; choose from {', '.join(INTERVENTIONS)}")
        if any(j < 0 for j in self.truncate):
            raise MentaleseError(f"truncate lengths must be >= 0, got {self.truncate}")
        if self.limit < 1 or self.score_batch_size < 1 or self.answer_min_tokens < 1:
            raise MentaleseError("limit, score_batch_size and answer_min_tokens must be >= 1")
        if self.answer_template is not None and "{answer}" not in self.answer_template:
            raise MentaleseError(f"answer_template {self.answer_template!r} has no {{answer}} placeholder")


@dataclass
class ThoughtMethod:
    """What the tool needs to know about a model's thoughts."""

    kind: str  # codi | coconut | bolt | soft_thinking
    lm: Any  # the causal LM the decode loop runs
    tokenizer: Any
    strategy: InputStrategy  # decodes thoughts and answer, as `mentalese eval` does
    rule: str  # span rule (thought_traces.trace_from_record)
    close_ids: list[int]
    prompt_template: str
    stop_ids: list[int] = field(default_factory=list)
    prompt_markers: int = 0
    answer_template: str = ANSWER_PROMPT + " {answer}"
    answer_eos: bool = True
    readable_thoughts: bool = False  # the thought steps' tokens mean something (BoLT, soft thinking)
    open_id: int | None = None  # the token that opens the thoughts ("marked" rule; None: the prompt opens them)


def load_method(cfg: ThoughtsConfig) -> ThoughtMethod:
    """Load `cfg.model` and recognise how it thinks (module docstring)."""
    from mentalese.api import load

    if not cfg.model:
        raise MentaleseError("analyze thoughts needs model=<dir>")
    soft = cfg.strategy == "soft_thinking" or cfg.soft_thinking is not None
    template = cfg.prompt or get_benchmark(cfg.benchmark).prompt
    saved = next((k for k, f in LATENT_CONFIGS.items() if (Path(cfg.model) / f).is_file()), None)
    if saved is not None and soft:
        raise MentaleseError(f"{cfg.model} is a saved {saved} model: it thinks in its own continuous thoughts; "
                             "drop strategy=soft_thinking / soft_thinking.*")
    if saved == "coconut":
        latent, tokenizer = _load_coconut(cfg)
        return _latent_method("coconut", latent, tokenizer, template)
    loaded = load(cfg.model, device=cfg.device, dtype=cfg.dtype)
    if loaded.kind == "codi":
        return _latent_method("codi", loaded.codi, loaded.tokenizer, template)
    if loaded.kind == "bolt":
        if soft:
            raise MentaleseError(f"{cfg.model} is a BoLT latent model: it writes discrete thoughts; drop soft_thinking")
        from mentalese.methods.bolt.data_format import BoltTokenIds

        ids = BoltTokenIds.from_tokenizer(loaded.tokenizer)
        return ThoughtMethod("bolt", loaded.model, loaded.tokenizer, loaded.strategy(), "marked", [ids.eol],
                             loaded.prompt_template(template), stop_ids=list(loaded.stop_token_ids),
                             prompt_markers=2, answer_template=ANSWER_PROMPT + " {answer}.", answer_eos=False,
                             readable_thoughts=True)
    if not soft:
        raise MentaleseError(f"{cfg.model} is a plain model: it has no latent thoughts; use strategy=soft_thinking "
                             "(a model that thinks in <think>...</think>), or give a CODI/Coconut/BoLT model")
    settings = cfg.soft_thinking or SoftThinkingConfig()
    if settings.answer_phase_soft:
        raise MentaleseError("soft_thinking.answer_phase_soft=true keeps the answers soft; the replays decode "
                             "answers as tokens: set it false")
    strategy = loaded.strategy("soft_thinking", soft_thinking=settings)
    return ThoughtMethod("soft_thinking", loaded.model, loaded.tokenizer, strategy, "embeds", [strategy.close_id],
                         template, answer_template="\n" + ANSWER_PROMPT + " {answer}", readable_thoughts=True)


def _latent_method(kind: str, latent, tokenizer, template: str) -> ThoughtMethod:
    """A model of the latent-thought protocol (CODIModel, CoconutModel): <bot>, n thoughts, <eot>."""
    return ThoughtMethod(kind, latent.lm, tokenizer, latent.strategy(), "marked", [latent.eot_id], template,
                         open_id=latent.bot_id)


def _load_coconut(cfg: ThoughtsConfig):
    try:
        from mentalese.methods.coconut.model import load_coconut
    except ImportError as e:
        raise MentaleseError(f"{cfg.model} is a saved Coconut model but mentalese.methods.coconut is missing "
                             f"({e})") from None
    dtype = "float32" if cfg.dtype == "auto" else cfg.dtype
    return load_coconut(cfg.model, dtype=dtype, device=cfg.device)


def gold_ids(tokenizer, template: str, answer: str, eos: bool) -> list[int]:
    """The gold continuation's ids. "head {answer}tail" is tokenised as head + " answer tail", the way the
    CODI data tokenises "The answer is:" and " 18" apart."""
    head, tail = template.split("{answer}", 1)
    value = answer + tail
    if head.endswith(" "):
        head, value = head[:-1], " " + value
    ids = (tokenizer(head, add_special_tokens=False)["input_ids"] if head else []) + \
        tokenizer(value, add_special_tokens=False)["input_ids"]
    return ids + ([tokenizer.eos_token_id] if eos else [])


def record_traces(method: ThoughtMethod, prompts: Sequence[str], config: DecodeConfig) -> tuple[list, list]:
    """(original decode results, their traces), in prompt order."""
    embed = method.lm.get_input_embeddings()
    results = decode(method.lm, method.tokenizer, prompts, config, TraceRecorder(method.strategy, embed.weight.dtype))
    prompt_ids = tokenize_prompts(method.tokenizer, prompts, config.add_special_tokens)

    def embed_tokens(ids: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return embed(torch.tensor(ids, device=embed.weight.device)).detach().cpu()

    stops = stop_ids_for(method.lm, method.tokenizer, config.stop_token_ids)
    traces = [trace_from_record(r.info.pop(RECORD_KEY), ids, method.rule, method.close_ids, stops, embed_tokens,
                                method.prompt_markers, method.open_id) for r, ids in zip(results, prompt_ids)]
    return results, traces


def truncation_lengths(cfg: ThoughtsConfig, traces: Sequence[ThoughtTrace]) -> list[int]:
    if cfg.truncate:
        return sorted(set(cfg.truncate))
    n = max(tr.num_thoughts for tr in traces)
    if n + 1 <= MAX_AUTO_TRUNCATIONS:
        return list(range(n + 1))
    return sorted({0, n} | {2 ** i for i in range(int(math.log2(n)) + 1)})


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _per_layer(rows: Sequence[list[float]]) -> list[float] | None:
    return [statistics.fmean(col) for col in zip(*rows)] if rows else None


def summarise(records: Sequence[dict], scores, kept: dict | None, num_thoughts: Sequence[int]) -> dict[str, Any]:
    """One intervention's numbers; drops are kept minus this (positive: the intervention hurts)."""
    thought_rows = [s.thought_attention for s in scores if s.thought_attention is not None]
    ref_rows = [s.reference_attention for s in scores if s.reference_attention is not None]
    with_ref = [s for s in scores if s.thought_attention is not None and s.reference_attention is not None]
    out = {
        "accuracy": _mean([r["correct_strict"] for r in records]),
        "accuracy_flexible": _mean([r["correct_flexible"] for r in records]),
        "answer_logprob": _mean([s.answer_logprob for s in scores]),
        "answer_logprob_per_token": _mean([s.answer_logprob / s.answer_tokens for s in scores]),
        "mean_thoughts": _mean(list(num_thoughts)),
        "examples_with_thoughts": len(thought_rows),
        "attention_on_thoughts": _mean([_mean(r) for r in thought_rows]),
        "attention_on_prompt_reference": _mean([_mean(r) for r in ref_rows]),
        "attention_per_thought_position": _mean([_mean(s.thought_attention) / n for s, n in zip(scores, num_thoughts)
                                                 if s.thought_attention is not None]),
        "attention_per_reference_position": _mean([_mean(s.reference_attention) / s.reference_positions
                                                   for s in with_ref]),
        "reference_positions": _mean([s.reference_positions for s in with_ref]),
        "attention_on_thoughts_per_layer": _per_layer(thought_rows),
        "attention_on_prompt_reference_per_layer": _per_layer(ref_rows),
    }
    base = kept or out
    out["accuracy_drop"] = base["accuracy"] - out["accuracy"]
    out["answer_logprob_drop"] = base["answer_logprob"] - out["answer_logprob"]
    return out


def _same_answer(replayed: list[int], trace: ThoughtTrace, original) -> bool:
    """The kept replay's answer is the original's (a prefix of it when the original ran out of steps)."""
    if original.stop_reason == "length":
        return replayed[:len(trace.answer_ids)] == trace.answer_ids
    return replayed == trace.answer_ids


def run_thoughts(cfg: ThoughtsConfig) -> dict[str, Any]:
    method = load_method(cfg)
    spec = get_benchmark(cfg.benchmark)
    examples = load_benchmark(cfg.benchmark, cfg.split, data_dir=cfg.data_dir, limit=cfg.limit, **cfg.task_options)
    if "swap" in cfg.interventions and len(examples) < 2:
        raise MentaleseError("the swap intervention needs at least 2 examples (limit >= 2)")
    dcfg = replace(cfg.decode, stop_token_ids=sorted({*cfg.decode.stop_token_ids, *method.stop_ids}))
    original, traces = record_traces(method, [render_prompt(method.prompt_template, ex.question) for ex in examples],
                                     dcfg)
    template = cfg.answer_template or method.answer_template
    eos = method.answer_eos if cfg.answer_eos is None else cfg.answer_eos
    golds = [gold_ids(method.tokenizer, template, ex.answer, eos) for ex in examples]

    variants: dict[str, list[ThoughtTrace]] = {"kept": traces}
    perm = derangement(len(traces), cfg.seed) if "swap" in cfg.interventions else None
    if perm is not None:
        variants["swap"] = swapped(traces, perm)
    if "zero" in cfg.interventions:
        variants["zero"] = zeroed(traces)
    if "noise" in cfg.interventions:
        variants["noise"] = noised(traces, cfg.seed)
    if "truncate" in cfg.interventions:
        for j in truncation_lengths(cfg, traces):
            variants[f"truncate_{j}"] = truncated(traces, j)

    summary: dict[str, Any] = {}
    per_example: list[dict] = [{"id": ex.id, "question": ex.question, "answer": ex.answer,
                                "num_thoughts": tr.num_thoughts, "interventions": {}}
                               for ex, tr in zip(examples, traces)]
    kept_answers: list[list[int]] = []
    for name, variant in variants.items():
        longest = max(tr.schedule_length for tr in variant)
        results = replay(method.lm, method.tokenizer, variant,
                         replace(dcfg, max_new_tokens=max(dcfg.max_new_tokens, longest + cfg.answer_min_tokens)))
        records = [grade_sample(r, ex, spec) for r, ex in zip(results, examples)]
        scores = score_traces(method.lm, variant, golds, cfg.score_batch_size, attention=cfg.attention)
        summary[name] = summarise(records, scores, summary.get("kept"), [tr.num_thoughts for tr in variant])
        if name == "kept":
            kept_answers = [r.token_ids for r in results]
        for row, rec, sc in zip(per_example, records, scores):
            row["interventions"][name] = {
                "text": rec["text"], "pred": rec["pred_strict"], "correct": rec["correct_strict"],
                "answer_logprob": sc.answer_logprob,
                "attention_on_thoughts": _mean(sc.thought_attention) if sc.thought_attention else None}

    original_records = [grade_sample(r, ex, spec) for r, ex in zip(original, examples)]
    for row, tr, res in zip(per_example, traces, original):
        row["original_text"] = res.text
        if method.readable_thoughts:
            row["thought_text"] = method.tokenizer.decode(tr.thought_token_ids)
    if perm is not None:
        for row, j in zip(per_example, perm):
            row["swapped_from"] = j
    report = {
        "model": cfg.model, "kind": method.kind, "benchmark": spec.name, "benchmark_version": spec.version,
        "split": cfg.split or spec.default_split, "num_examples": len(examples),
        "num_thoughts": {"mean": _mean([tr.num_thoughts for tr in traces]),
                         "min": min(tr.num_thoughts for tr in traces), "max": max(tr.num_thoughts for tr in traces)},
        "original_accuracy": _mean([r["correct_strict"] for r in original_records]),
        "kept_replay_equals_original": _mean([_same_answer(a, tr, r)
                                              for a, tr, r in zip(kept_answers, traces, original)]),
        "answer_template": template, "answer_eos": eos, "swap_permutation": perm,
        "interventions": summary,
    }
    out = Path(cfg.output_dir)
    save_config(cfg, out / "config.yaml")
    write_text_atomic(out / "thoughts.json", json.dumps(report, indent=2))
    write_text_atomic(out / "thoughts_examples.jsonl", "".join(json.dumps(r) + "\n" for r in per_example))
    plot_thoughts(report, out / "thoughts.png")
    return {k: v for k, v in report.items() if k != "swap_permutation"}


def plot_thoughts(report: dict, path: str | Path) -> Path:
    """Accuracy and gold log-likelihood per intervention (bars), attention mass per layer (kept)."""
    from mentalese.analysis.plots import plt

    names = list(report["interventions"])
    rows = [report["interventions"][n] for n in names]
    ys = list(range(len(names)))
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 1.8 + 0.36 * len(names)),
                                        gridspec_kw={"width_ratios": [1, 1, 1.1]})
    acc = [100 * r["accuracy"] for r in rows]
    ax1.barh(ys, acc, color=["#4c72b0" if n == "kept" else "#dd8452" for n in names])
    for y, a in zip(ys, acc):
        ax1.text(a + 1, y, f"{a:.0f}%", va="center", fontsize=8)
    ax1.axvline(acc[0], color="gray", linestyle="--", linewidth=1)
    ax1.set_xlim(0, 115)
    ax1.set_xticks(range(0, 101, 20))
    ax1.set_xlabel("answer accuracy (%)")
    ax1.set_yticks(ys, names, fontsize=9)
    ax1.invert_yaxis()
    lp = [r["answer_logprob"] for r in rows]
    ax2.barh(ys, lp, color=["#4c72b0" if n == "kept" else "#dd8452" for n in names])
    for y, v in zip(ys, lp):
        ax2.text(v, y, f" {v:.2f}", va="center", ha="right" if v < 0 else "left", fontsize=8)
    ax2.axvline(lp[0], color="gray", linestyle="--", linewidth=1)
    ax2.set_yticks(ys, [""] * len(ys))
    ax2.invert_yaxis()
    ax2.set_xlabel("gold answer log-likelihood (nats, mean)")
    ax2.set_xlim(min(min(lp) * 1.25, -1e-3), 0)
    kept = rows[0]
    layers = kept["attention_on_thoughts_per_layer"]
    if layers:
        xs = list(range(len(layers)))
        ax3.plot(xs, layers, marker="o", label=f"thought positions (mean {kept['attention_on_thoughts']:.3f})")
        ref = kept["attention_on_prompt_reference_per_layer"]
        if ref:
            ax3.plot(xs, ref, marker="s", linestyle="--",
                     label=f"as many prompt positions (mean {kept['attention_on_prompt_reference']:.3f})")
        ax3.set_xticks(xs)
        ax3.set_xlabel("layer")
        ax3.set_ylim(0, min(1.0, 1.5 * max(layers + (ref or [])) + 0.02))
        ax3.legend(fontsize=8, loc="upper left", frameon=False)
    else:
        ax3.text(0.5, 0.5, "no thoughts recorded", ha="center", va="center", transform=ax3.transAxes)
    ax3.set_ylabel("attention mass of answer positions")
    ax3.grid(alpha=0.3)
    for ax in (ax1, ax2):
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"do the thoughts matter? {report['kind']} on {report['benchmark']} "
                 f"({report['num_examples']} problems, {report['num_thoughts']['mean']:.1f} thoughts on average)")
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
    return Path(path)
