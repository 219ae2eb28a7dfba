"""The BoLT toy experiment: raw-only vs teacher warm start vs EM (K=1, K=4, uniform control).

    mentalese demo bolt-toy [output_dir=runs/bolt_toy] [iterations=3] [seeds=[0,1,2]] [quick=true]

Every variant is a `run_bolt` run of the recipe bolt/toy_chain with a few overrides, in its own
folder; the EM variants share the teacher run's warm-start model. At equal raw data:
  raw (same compute)  the raw corpus for as many optimizer steps as each latent M-step
  raw (same tokens)   the raw corpus for as many epochs as an EM M-step makes over its corpus
Metrics: held-out accuracy (latent models are prompted with the question chunk in its training layout,
`SOL <|prior|> EOL Q: ... . SOL <|prior|>`; raw models with `Q: ... . `),
the E-step ELBO (k = 1, 2, 4) of each iteration's proposal model, how many thoughts are exact
derivations (sampled proposals, selected thoughts, and thoughts written at evaluation), and how many
selected thoughts end with the document's answer (what the importance weights can see).
With several `seeds`, each seed is a whole experiment (warm start, E-steps and M-steps seeded by it)
in output_dir/seed_<s>/, and output_dir/report.md gives the mean and every seed's value.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from mentalese.config import load_config, save_config
from mentalese.atomic_files import write_text_atomic
from mentalese.methods.bolt.config import BoltConfig
from mentalese.methods.bolt.data_format import chunk_corpus
from mentalese.methods.bolt.em import load_documents, run_bolt
from mentalese.methods.bolt.estep import read_estep
from mentalese.methods.bolt.toy import (ToyCorpusConfig, latent_eval_prompt, raw_eval_prompt, thought_is_correct,
                                        true_thought)
from mentalese.recipes import resolve_recipe

VARIANTS = {  # name -> (label, overrides)
    "raw-compute": ("raw only (same compute)", ["mode=raw"]),
    "teacher": ("teacher warm start", ["mode=teacher"]),
    "em-k4": ("EM K=4 importance", ["estep.num_samples=4", "estep.selection=importance"]),
    "em-k1": ("EM K=1", ["estep.num_samples=1", "estep.selection=importance"]),
    "uniform-k4": ("EM K=4 uniform (control)", ["estep.num_samples=4", "estep.selection=uniform"]),
    "raw-tokens": ("raw only (same tokens)", ["mode=raw"]),
}


@dataclass
class ToyExperimentConfig:
    output_dir: str = field(default="runs/bolt_toy", metadata={"help": "experiment directory (report.md)"})
    recipe: str = field(default="bolt/toy_chain", metadata={"help": "base recipe of every variant"})
    variants: list[str] = field(default_factory=lambda: list(VARIANTS), metadata={"help": f"of {list(VARIANTS)}"})
    iterations: int = field(default=3, metadata={"help": "EM iterations"})
    overrides: list[str] = field(default_factory=list, metadata={"help": "extra key=value for every run"})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={
        "help": "one whole experiment per seed (sets seed and estep.seed); several: seed_<s>/ each + a mean report"})
    quick: bool = field(default=False, metadata={"help": "tiny setting for tests"})

    def __post_init__(self) -> None:
        from mentalese.errors import MentaleseError

        unknown = set(self.variants) - set(VARIANTS)
        if unknown:
            raise MentaleseError(f"unknown variants {sorted(unknown)}; known: {list(VARIANTS)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise MentaleseError(f"seeds must be a non-empty list of distinct integers, got {self.seeds}")


QUICK = ["toy_options.documents=120", "teacher_docs=30", "max_steps=60", "task_options.num_examples=60",
         "estep.shard_size=100"]


def variant_config(cfg: ToyExperimentConfig, name: str, extra: list[str] = ()) -> BoltConfig:
    out = Path(cfg.output_dir)
    common = (QUICK if cfg.quick else []) + list(cfg.overrides) + [f"em_iterations={cfg.iterations}"]
    if cfg.seeds != [0]:
        common += [f"seed={cfg.seeds[0]}", f"estep.seed={cfg.seeds[0]}"]
    if name.startswith(("em", "uniform")):
        common.append(f"warm_start_model={out / 'teacher' / 'iter_0' / 'mstep' / 'model'}")
    overrides = common + VARIANTS[name][1] + list(extra) + [f"output_dir={out / name}"]
    bolt = load_config(BoltConfig, resolve_recipe(cfg.recipe), overrides)
    # latent models: the question chunk in the layout of their teacher documents (empty thought, prior
    # order); raw models never saw the BoLT tokens: the plain question. JSON is a YAML string.
    prompt = raw_eval_prompt(bolt.eval_prompt) if bolt.mode == "raw" else latent_eval_prompt(bolt.eval_prompt)
    if prompt != bolt.eval_prompt:
        bolt = load_config(BoltConfig, resolve_recipe(cfg.recipe), overrides + [f"eval_prompt={json.dumps(prompt)}"])
    return bolt


def thought_stats(run_dir: Path, bolt: BoltConfig, iteration: int) -> dict:
    """Exact-derivation rates of the E-step's proposals and selected thoughts (answer chunks only)."""
    estep = run_dir / f"iter_{iteration}" / "estep"
    if not (estep / "manifest.json").exists():
        return {}
    docs, _ = chunk_corpus(load_documents(bolt), bolt.chunk_mean_sentences, bolt.chunk_max_sentences)
    mod = ToyCorpusConfig(**bolt.toy_options).modulus
    want = {c.chunk_id: true_thought(d[c.index - 1].text if c.index else "", c.text, mod)
            for d in docs for c in d if c.text.startswith("The answer is")}
    props = sel = sel_result = n = n_props = 0
    for r in read_estep(estep):
        if r["chunk_id"] not in want:
            continue
        n += 1
        props += sum(p.strip() == want[r["chunk_id"]] for p, ok in zip(r["proposals"], r["closed"]) if ok)
        n_props += len(r["proposals"])
        sel += r["thought"] is not None and r["thought"].strip() == want[r["chunk_id"]]
        sel_result += r["thought"] is not None and final_result(r["thought"]) == final_result(want[r["chunk_id"]])
    return {"proposals_correct": props / n_props if n_props else math.nan, "selected_correct": sel / n if n else math.nan,
            "selected_result_correct": sel_result / n if n else math.nan}


def final_result(thought: str) -> str | None:
    """The last `=d` of a derivation (what the answer should copy); None when there is none."""
    results = re.findall(r"=(\d+)", thought)
    return results[-1] if results else None


def eval_thoughts_correct(eval_dir: Path, modulus: int) -> float:
    """Share of evaluation outputs whose thought (text before 'The answer is') is the exact true thought."""
    good = total = 0
    with (eval_dir / "predictions.jsonl").open() as f:
        for line in f:
            rec = json.loads(line)
            thought = rec["samples"][0]["text"].split("The answer is")[0]
            good += thought_is_correct(rec["question"], thought, modulus)
            total += 1
    return good / total


def run_toy_experiment(cfg: ToyExperimentConfig) -> Path:
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "experiment_config.yaml")
    if len(cfg.seeds) > 1:
        rows = []
        for seed in cfg.seeds:
            one = replace(cfg, output_dir=str(out / f"seed_{seed}"), seeds=[seed])
            run_toy_experiment(one)
            rows += [{**r, "seed": seed} for r in json.loads((Path(one.output_dir) / "results.json").read_text())]
        write_text_atomic(out / "results.json", json.dumps(rows, indent=2, default=str))
        from mentalese.methods.bolt.report import write_seeds_report

        return write_seeds_report(cfg, out, rows)
    order = [v for v in ("raw-compute", "teacher", "em-k4", "em-k1", "uniform-k4", "raw-tokens") if v in cfg.variants]
    if any(v.startswith(("em", "uniform")) for v in order) and "teacher" not in order:
        order.insert(0, "teacher")  # the EM variants start from its warm-start model
    rows = []
    for name in order:
        extra = []
        if name == "raw-tokens":
            extra = [f"max_steps={same_token_steps(cfg, out)}"]
        bolt = variant_config(cfg, name, extra)
        print(f"[bolt-toy] {name}: {VARIANTS[name][0]}", flush=True)
        summary = run_bolt(bolt)
        mod = ToyCorpusConfig(**bolt.toy_options).modulus
        for it in summary["iterations"]:
            run_dir = out / name
            if name.startswith(("em", "uniform")) and it["iteration"] == 0:
                continue  # the shared warm start is the teacher row
            latent = it["kind"] != "raw"
            row = {"variant": name, "label": VARIANTS[name][0], **it, "max_steps": bolt.max_steps,
                   **thought_stats(run_dir, bolt, it["iteration"])}
            if latent:
                row["eval_thoughts_correct"] = eval_thoughts_correct(run_dir / f"iter_{it['iteration']}" / "eval", mod)
            rows.append(row)
    write_text_atomic(out / "results.json", json.dumps(rows, indent=2, default=str))
    from mentalese.methods.bolt.report import write_toy_report

    return write_toy_report(cfg, out, rows)


def same_token_steps(cfg: ToyExperimentConfig, out: Path) -> int:
    """Steps that give the raw corpus the epochs an EM M-step gives its thought-augmented corpus."""
    em = next((out / v / "iter_1" / "mstep" / "train_metrics.json" for v in ("em-k4", "em-k1", "uniform-k4")
               if (out / v / "iter_1" / "mstep" / "train_metrics.json").exists()), None)
    raw = out / "raw-compute" / "iter_0" / "mstep" / "train_metrics.json"
    ref = em or out / "teacher" / "iter_0" / "mstep" / "train_metrics.json"
    if not raw.exists() or not ref.exists():
        from mentalese.errors import MentaleseError

        raise MentaleseError("raw-tokens needs the raw-compute and a latent run first")
    r, e = json.loads(raw.read_text()), json.loads(ref.read_text())
    return max(1, round(variant_config(cfg, "raw-compute").max_steps * r["sequences"] / e["sequences"]))
