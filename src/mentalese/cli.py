"""The `mentalese` command line. Every command takes `key=value` overrides of its config dataclass.

    mentalese demo [quick=true] [output_dir=runs/demo]
    mentalese train sft/chain_cot [output_dir=runs/cot] [learning_rate=1e-3 ...]
    mentalese eval model=runs/cot/model benchmark=chain [decode.max_new_tokens=64 ...]
    mentalese bench decode|demo [output=bench.json]
    mentalese benchmarks | recipes
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from mentalese.errors import MentaleseError


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    for noisy in ("httpx", "datasets", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_demo(args: argparse.Namespace) -> None:
    from mentalese.config import load_config
    from mentalese.demo import DemoConfig, run_demo

    report = run_demo(load_config(DemoConfig, args.recipe, args.overrides))
    print(f"report: {report}")


def cmd_train(args: argparse.Namespace) -> None:
    from mentalese.config import load_config
    from mentalese.methods.sft import SFTConfig, train_sft
    from mentalese.recipes import resolve_recipe

    cfg = load_config(SFTConfig, resolve_recipe(args.recipe), args.overrides)
    print(f"model: {train_sft(cfg)}")


def cmd_eval(args: argparse.Namespace) -> None:
    from mentalese.config import load_config
    from mentalese.evaluation.harness import EvalConfig
    from mentalese.evaluation.run import run_eval

    from mentalese.recipes import resolve_recipe

    recipe = resolve_recipe(args.recipe) if args.recipe else None
    cfg = load_config(EvalConfig, recipe, args.overrides)
    metrics = run_eval(cfg)
    keys = ["benchmark", "num_examples", "accuracy", "accuracy_flexible", "mean_generated_tokens",
            "latency_per_example_s", "throughput_examples_per_s"]
    print(json.dumps({k: metrics[k] for k in keys}, indent=2))
    _fail_on_decode_errors(metrics, cfg.output_dir)


def _fail_on_decode_errors(metrics: dict, output_dir: str) -> None:
    """Generations that stopped on NaN/inf logits count as wrong: the scores are then not the model's."""
    if metrics.get("num_errors"):
        total = metrics["num_examples"] * metrics.get("num_samples", 1)
        raise MentaleseError(f"{metrics['num_errors']} of {total} generations stopped on non-finite (NaN/inf) "
                             f"logits; the per-example errors are in {output_dir}/predictions.jsonl")


def cmd_bench(args: argparse.Namespace) -> None:
    from mentalese.bench import run_bench

    print(json.dumps(run_bench(args.which, args.overrides), indent=2))


def cmd_codi_train(args: argparse.Namespace) -> None:
    from mentalese.config import load_config
    from mentalese.methods.codi.config import CODIConfig
    from mentalese.methods.codi.trainer import train_codi
    from mentalese.recipes import resolve_recipe

    print(f"model: {train_codi(load_config(CODIConfig, resolve_recipe(args.recipe), args.overrides))}")


def cmd_codi_eval(args: argparse.Namespace) -> None:
    from mentalese.config import load_config
    from mentalese.evaluation.harness import EvalConfig
    from mentalese.methods.codi.evaluate import run_codi_eval

    cfg = load_config(EvalConfig, args.recipe, args.overrides)
    metrics = run_codi_eval(cfg)
    print(json.dumps({k: metrics[k] for k in ["benchmark", "num_examples", "accuracy", "accuracy_flexible",
                                              "mean_generated_tokens", "latency_per_example_s"]}, indent=2))
    _fail_on_decode_errors(metrics, cfg.output_dir)


def cmd_codi_probe(args: argparse.Namespace) -> None:
    from mentalese.analysis.codi_probe import ProbeConfig, run_probe
    from mentalese.config import load_config

    print(json.dumps(run_probe(load_config(ProbeConfig, args.recipe, args.overrides)), indent=2))


def cmd_codi_efficiency(args: argparse.Namespace) -> None:
    from mentalese.config import load_config
    from mentalese.methods.codi.efficiency import EfficiencyConfig, TrainStepBenchConfig, bench_train_step, compare_efficiency

    if args.which == "decode":
        print(json.dumps(compare_efficiency(load_config(EfficiencyConfig, args.recipe, args.overrides)), indent=2))
    else:
        print(json.dumps(bench_train_step(load_config(TrainStepBenchConfig, args.recipe, args.overrides)), indent=2))


def cmd_soft_analysis(args: argparse.Namespace) -> None:
    from mentalese.analysis import soft_commands as soft
    from mentalese.config import load_config

    if args.command == "soft-bench":
        result = soft.run_soft_bench(load_config(soft.SoftBenchConfig, args.recipe, args.overrides))
        print(json.dumps(result["results"], indent=2))
        return
    run = {"soft-js": soft.run_soft_js, "soft-logit-lens": soft.run_soft_logit_lens,
           "soft-rouge": soft.run_soft_rouge, "soft-passk": soft.run_soft_passk}[args.command]
    result = run(load_config(soft.SoftAnalysisConfig, args.recipe, args.overrides))
    print(json.dumps({k: v for k, v in result.items() if k != "by_step"}, indent=2))


def cmd_bolt(args: argparse.Namespace) -> None:
    from mentalese.config import load_config
    from mentalese.methods.bolt import cli_commands

    cli_commands.run(args.command, args.recipe, args.overrides, load_config)


def cmd_list_benchmarks(args: argparse.Namespace) -> None:
    from mentalese.tasks.registry import get_benchmark, list_benchmarks

    for name in list_benchmarks():
        spec = get_benchmark(name)
        print(f"{name:14s} v{spec.version}  splits={','.join(spec.splits)}  {spec.description}")


def cmd_list_recipes(args: argparse.Namespace) -> None:
    from mentalese.recipes import list_recipes

    print("\n".join(list_recipes()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mentalese", description="Reasoning in latent space with HF models.")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn, help_text: str, recipe: str | None = "optional", which: list[str] | None = None):
        p = sub.add_parser(name, help=help_text)
        if which:
            p.add_argument("which", choices=which, help="what to run")
        if recipe == "required":
            p.add_argument("recipe", help="recipe YAML path or shipped recipe name (see `mentalese recipes`)")
        elif recipe == "optional":
            p.add_argument("--recipe", default=None, help="YAML file with config values")
        p.add_argument("overrides", nargs="*", help="key=value config overrides")
        p.set_defaults(fn=fn)
        return p

    add("demo", cmd_demo, "train and compare tiny models on the chain task, write a report")
    add("train", cmd_train, "supervised fine-tuning (CoT-SFT / No-CoT-SFT) from a recipe", recipe="required")
    add("eval", cmd_eval, "evaluate a model on a registered benchmark")
    add("bench", cmd_bench, "benchmarks that write JSON (key=value overrides)", recipe=None, which=["decode", "demo"])
    add("benchmarks", cmd_list_benchmarks, "list registered benchmarks", recipe=None)
    add("recipes", cmd_list_recipes, "list shipped recipes", recipe=None)
    add("codi-train", cmd_codi_train, "train CODI (continuous CoT by self-distillation) from a recipe", recipe="required")
    add("codi-eval", cmd_codi_eval, "evaluate a saved CODI model on a registered benchmark")
    add("codi-probe", cmd_codi_probe, "decode CODI's continuous thoughts into top-k tokens (table + heatmap)")
    add("codi-efficiency", cmd_codi_efficiency, "CODI vs CoT-SFT: compression and latency (decode) or training "
        "step time and memory (train-step) -> JSON", which=["decode", "train-step"])
    add("soft-js", cmd_soft_analysis, "soft thinking: JS(soft, top-1/top-2) per thinking step -> JSON + PNG")
    add("soft-logit-lens", cmd_soft_analysis, "soft thinking: logit lens of a two-token soft input -> JSON + PNG")
    add("soft-rouge", cmd_soft_analysis, "soft thinking: ROUGE-L of soft/stochastic traces vs greedy -> JSON + PNG")
    add("soft-passk", cmd_soft_analysis, "soft thinking: pass@k curves of sampling/soft/Dirichlet/Gumbel -> JSON + PNG")
    add("soft-bench", cmd_soft_analysis, "soft thinking: decode-step time / greedy step time -> JSON + PNG")
    add("bolt-em", cmd_bolt, "BoLT: warm start + EM iterations from a recipe (resumable)", recipe="required")
    add("bolt-synthesize", cmd_bolt, "BoLT: teacher thoughts for a recipe's corpus (cached)", recipe="required")
    add("bolt-toy", cmd_bolt, "BoLT: the CPU toy experiment (raw vs teacher vs EM), report with plots")
    add("bolt-bench", cmd_bolt, "BoLT: E-step cost (scoring time / sampling time) -> JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries()
    try:
        args.fn(args)
    except MentaleseError as e:
        return _fail(str(e))
    except OSError as e:  # disk full, read-only or missing output directory, ...
        where = f": {e.filename}" if e.filename else ""
        return _fail(f"{e.strerror}{where}" if e.strerror else str(e))
    return 0


def _fail(message: str) -> int:
    lines = message.strip().splitlines() or ["unknown error"]
    print(f"mentalese: error: {lines[0]}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
