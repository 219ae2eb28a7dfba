"""Probe CODI's continuous thoughts: decode each one through the lm_head into its top-k tokens.

For every problem, each thought's last-layer hidden state (before the projection, i.e. what the
lm_head would read) is turned into a next-token distribution; the top-k tokens and probabilities
are written to probe.json and probe.md, and the top-1 probability of every (problem, thought) to a
heatmap PNG annotated with the top-1 token. When the examples carry CoT steps with results
("a+b=c", "<<a*b=c>>", read by `tasks.cot_steps.step_result`), `intermediate_match` reports, for
CoT step j, the share of problems where some thought's top-k contains that step's result (the
paper's 97.1 / 83.9 / 75.0 % analysis), next to the same share against another problem's results
(`intermediate_match_other_problem`): with few distinct results (ten digits on the chain task) the
raw share is high by chance alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mentalese.decoding.loop import DecodeConfig, decode
from mentalese.errors import MentaleseError
from mentalese.atomic_files import write_text_atomic
from mentalese.tasks.cot_steps import step_result
from mentalese.tasks.registry import get_benchmark, load_benchmark, render_prompt
from mentalese.atomic_files import save_figure_atomic


@dataclass
class ProbeConfig:
    model: str = field(default="", metadata={"help": "saved CODI model directory"})
    benchmark: str = field(default="chain", metadata={"help": "registered benchmark"})
    split: str | None = field(default=None, metadata={"help": "split; default: the benchmark's default"})
    task_options: dict = field(default_factory=dict, metadata={"help": "options for synthetic benchmarks"})
    limit: int = field(default=20, metadata={"help": "problems to probe"})
    top_k: int = field(default=5, metadata={"help": "tokens listed per thought (paper: 5)"})
    max_new_tokens: int = field(default=64, metadata={"help": "decode steps per problem"})
    device: str = field(default="auto", metadata={"help": "cpu / cuda / auto"})
    output_dir: str = field(default="runs/codi_probe", metadata={"help": "where probe.json/.md/.png go"})


@torch.no_grad()
def probe_thoughts(model, tokenizer, prompts: list[str], top_k: int = 5, max_new_tokens: int = 64
                   ) -> tuple[list[list[list[tuple[str, float]]]], list[str]]:
    """Per prompt, per thought: [(token, probability)] * top_k; plus each prompt's decoded answer."""
    strategy = model.strategy(record_thoughts=True)
    results = decode(model.lm, tokenizer, prompts, DecodeConfig(max_new_tokens=max_new_tokens, batch_size=1),
                     strategy=strategy)  # batch 1 keeps the recorded thoughts in prompt order
    head = model.lm.get_output_embeddings()
    table = []
    for thoughts in strategy.thoughts:  # [1, n, d]
        probs = head(thoughts[0].to(head.weight.device, head.weight.dtype)).float().softmax(-1)
        values, ids = probs.topk(top_k, dim=-1)
        table.append([[(tokenizer.decode([i]), round(float(v), 4)) for i, v in zip(row_ids.tolist(), row_v)]
                      for row_ids, row_v in zip(ids, values)])
    return table, [r.text for r in results]


def intermediate_match(table, examples) -> dict[str, float]:
    """Share of problems where the result of CoT step j is in some thought's top-k tokens."""
    shares = {}
    num_steps = max(len(ex.cot_steps) for ex in examples)
    for j in range(num_steps):
        hits = [any(step_result(ex.cot_steps[j]) == tok.strip() for thought in thoughts for tok, _ in thought)
                for ex, thoughts in zip(examples, table) if j < len(ex.cot_steps) and step_result(ex.cot_steps[j])]
        if hits:
            shares[f"step_{j + 1}"] = sum(hits) / len(hits)
    return shares


def aligned_top1_match(table, examples) -> dict[str, float]:
    """Share of problems where thought j's top-1 token is CoT step j's result (a stricter, position-aligned
    reading: chance is ~1/10 on the chain task, against ~1 - 0.9^(k*n) for `intermediate_match`)."""
    shares = {}
    for j in range(max(len(ex.cot_steps) for ex in examples)):
        hits = [thoughts[j][0][0].strip() == step_result(ex.cot_steps[j])
                for ex, thoughts in zip(examples, table)
                if j < len(ex.cot_steps) and j < len(thoughts) and step_result(ex.cot_steps[j])]
        if hits:
            shares[f"step_{j + 1}"] = sum(hits) / len(hits)
    return shares


def run_probe(cfg: ProbeConfig) -> dict[str, Any]:
    from mentalese.analysis.plots import plt
    from mentalese.methods.codi.model import load_codi

    model, tokenizer = load_codi(cfg.model, device=cfg.device)
    if model.spec.num_latent == 0 or cfg.max_new_tokens < model.spec.num_latent + 2:
        raise MentaleseError(f"nothing to probe: num_latent={model.spec.num_latent}, max_new_tokens must exceed "
                             f"num_latent + 1 (got {cfg.max_new_tokens})")
    spec = get_benchmark(cfg.benchmark)
    examples = load_benchmark(cfg.benchmark, cfg.split, limit=cfg.limit, **cfg.task_options)
    prompts = [render_prompt(spec.prompt, ex.question) for ex in examples]
    table, answers = probe_thoughts(model, tokenizer, prompts, cfg.top_k, cfg.max_new_tokens)
    out = Path(cfg.output_dir)
    n = model.spec.num_latent
    records = [{"question": ex.question, "answer": ex.answer, "cot_steps": ex.cot_steps, "decoded": text,
                "thoughts": [[{"token": t, "prob": p} for t, p in thought] for thought in thoughts]}
               for ex, thoughts, text in zip(examples, table, answers)]
    summary = {"model": cfg.model, "num_latent": n, "top_k": cfg.top_k, "num_examples": len(examples),
               "intermediate_match": intermediate_match(table, examples) if n else {},
               "intermediate_match_other_problem": intermediate_match(table, examples[1:] + examples[:1]) if n else {},
               "thought_j_top1_is_step_j": aligned_top1_match(table, examples) if n else {},
               "thought_j_top1_is_step_j_other_problem":
                   aligned_top1_match(table, examples[1:] + examples[:1]) if n else {}}
    write_text_atomic(out / "probe.json", json.dumps({**summary, "examples": records}, indent=2))

    lines = [f"# CODI probe: top-{cfg.top_k} tokens of each continuous thought", "",
             f"intermediate results found: {summary['intermediate_match']} "
             f"(against another problem's results: {summary['intermediate_match_other_problem']})", "",
             f"thought j's top-1 token is step j's result: {summary['thought_j_top1_is_step_j']} "
             f"(against another problem's: {summary['thought_j_top1_is_step_j_other_problem']})", "",
             "| question | steps | " + " | ".join(f"thought {i + 1}" for i in range(n)) + " | decoded |",
             "|---|---|" + "---|" * n + "---|"]
    for r in records:
        cells = [" ".join(f"`{t['token']!r}` {t['prob']:.2f}" for t in th) for th in r["thoughts"]]
        lines.append(f"| {r['question']} | {' '.join(r['cot_steps'])} | " + " | ".join(cells)
                     + f" | {r['decoded'].strip()!r} |")
    write_text_atomic(out / "probe.md", "\n".join(lines) + "\n")

    if n:
        top1 = [[th[0][1] for th in thoughts] for thoughts in table]
        fig, ax = plt.subplots(figsize=(1.2 * n + 2, 0.35 * len(table) + 1.5))
        ax.imshow(top1, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        for i, thoughts in enumerate(table):
            for j, th in enumerate(thoughts):
                ax.text(j, i, repr(th[0][0])[1:-1], ha="center", va="center", color="white", fontsize=8)
        ax.set_xticks(range(n), [f"thought {j + 1}" for j in range(n)])
        ax.set_yticks(range(len(table)), [ex.question for ex in examples], fontsize=7)
        ax.set_title("top-1 token and its probability per continuous thought")
        fig.tight_layout()
        save_figure_atomic(fig, out / "probe.png", dpi=120)
        plt.close(fig)
    return summary
