"""`mentalese eval`: load a model and a benchmark from an `EvalConfig` and evaluate.

One path for every saved model: a saved CODI directory (`codi_config.json`, methods/codi/model.py) or
Coconut directory (`coconut_config.json`, methods/coconut/model.py) is recognised by itself and decoded
with its continuous thoughts (`CODIStrategy` / `CoconutStrategy`: `decode.max_new_tokens` counts the
n + 2 latent steps; dtype auto means float32 there, as both train); any other model decodes token by
token, or with soft thinking when `soft_thinking.*` is set. `EvalConfig.strategy` names the strategy
outright (auto | token | soft_thinking | codi | coconut); one that does not fit the model is an error.

Resumable and data-parallel through the harness's shards: rerun the same command after a crash;
`torchrun --nproc_per_node N -m mentalese eval ...` splits the shards over N processes.
Token sampling is `decode.*` for every strategy (soft thinking's answer phase included).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from mentalese.config import config_to_dict, save_config
from mentalese.evaluation.harness import EvalConfig, evaluate
from mentalese.sharding import Processes, current_processes
from mentalese.errors import MentaleseError
from mentalese.models.loading import load_model_and_tokenizer
from mentalese.tasks.registry import get_benchmark, load_benchmark


def process_device(device: str, procs: Processes) -> str:
    """"auto" with several processes on a GPU machine: this process's own GPU (cuda:LOCAL_RANK)."""
    import torch

    if device == "auto" and procs.world_size > 1 and torch.cuda.is_available():
        return f"cuda:{procs.local_rank}"
    return device


def model_files_key(model: str) -> list | None:
    """Names, sizes and modification times of a local model directory's files (None for hub names):
    a model rewritten in place changes the run fingerprint."""
    path = Path(model)
    if not path.is_dir():
        return None
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(path.iterdir()) if f.is_file()]


def eval_run_key(cfg: EvalConfig) -> dict[str, Any]:
    """The config (less where it writes) and the model files: what a resumed run must share."""
    return {"config": config_to_dict(dataclasses.replace(cfg, output_dir="")), "model_files": model_files_key(cfg.model)}


def run_with_model(cfg: EvalConfig, load: Callable[[str], tuple], progress: bool = True) -> dict[str, Any]:
    """What every eval command shares: the benchmark, then `load(device) -> (model, tokenizer, strategy,
    extra metrics)`, then config.yaml (main process; written only once everything loaded) and the harness."""
    spec = get_benchmark(cfg.benchmark)
    examples = load_benchmark(cfg.benchmark, cfg.split, data_dir=cfg.data_dir, limit=cfg.limit, **cfg.task_options)
    procs = current_processes()
    model, tokenizer, strategy, extra_metrics = load(process_device(cfg.device, procs))
    if strategy is not None:  # decode.* settings it cannot honour fail here, before config.yaml is written
        strategy.bind_sampling(cfg.decode.sampling())
    prompt, decoding = cfg.prompt, cfg.decode
    if extra_metrics.get("method") == "bolt":  # the layout its M-step trained: the thought first, up to its SOL
        from dataclasses import replace

        from mentalese.methods.bolt.data_format import BoltTokenIds
        from mentalese.methods.bolt.em import prompt_layout

        prompt = prompt_layout(tokenizer, cfg.prompt or spec.prompt, latent=True)
        sol = BoltTokenIds.from_tokenizer(tokenizer).sol
        decoding = replace(cfg.decode, stop_token_ids=sorted({*cfg.decode.stop_token_ids, sol}))
    out = Path(cfg.output_dir)
    if procs.is_main:
        save_config(cfg, out / "config.yaml")
    return evaluate(model, tokenizer, examples, spec, decoding, strategy, num_samples=cfg.num_samples,
                    prompt=prompt, output_dir=out, progress=progress, shard_size=cfg.shard_size,
                    processes=procs, extra_metrics={"model": cfg.model, **extra_metrics},
                    run_key=eval_run_key(cfg))


def is_saved_codi(model: str | Path) -> bool:
    """A directory written by `save_codi` (it holds codi_config.json)."""
    from mentalese.methods.codi.model import CONFIG_FILE

    return (Path(model) / CONFIG_FILE).is_file()


def is_saved_coconut(model: str | Path) -> bool:
    """A directory written by `save_coconut` (it holds coconut_config.json)."""
    from mentalese.methods.coconut.model import is_saved_coconut as saved

    return saved(model)


def saved_latent_kind(model: str | Path) -> str | None:
    """"codi" or "coconut" for a saved latent-thought model directory, else None."""
    return "codi" if is_saved_codi(model) else "coconut" if is_saved_coconut(model) else None


LATENT_KINDS = ("codi", "coconut")  # saved models that decode with their own strategy (named like it)
STRATEGIES = ("auto", "token", "soft_thinking", *LATENT_KINDS)  # EvalConfig.strategy, LoadedModel.strategy


def check_strategy_name(name: str) -> None:
    if name not in STRATEGIES:
        raise MentaleseError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")


def resolve_strategy(requested: str, latent_kind: str | None, soft_thinking: bool,
                     model: str | Path = "the model") -> str:
    """The strategy that decodes `model` (`latent_kind`: "codi" / "coconut" for a saved model of that kind,
    else None; `soft_thinking`: its settings are given): token, soft_thinking, codi or coconut. A request
    that does not fit is an error (module docstring)."""
    check_strategy_name(requested)
    if requested == "token" and soft_thinking:
        raise MentaleseError("strategy=token but soft_thinking.* is set: drop soft_thinking or use "
                             "strategy=soft_thinking")
    names = {"codi": "CODI", "coconut": "Coconut"}
    if latent_kind is not None:
        if requested not in ("auto", latent_kind) or soft_thinking:
            what = "soft_thinking.*" if requested in ("auto", latent_kind) else f"strategy={requested}"
            raise MentaleseError(f"{model} is a saved {names[latent_kind]} model: {what} does not apply to it "
                                 f"(it decodes with strategy=auto or {latent_kind})")
        return latent_kind
    if requested in LATENT_KINDS:
        raise MentaleseError(f"strategy={requested} needs a saved {names[requested]} model (a directory with "
                             f"{requested}_config.json); {model} is not one")
    if requested == "auto":
        return "soft_thinking" if soft_thinking else "token"
    return requested


def codi_dtype(dtype: str) -> str:
    """CODI and Coconut models decode in float32 unless a dtype is named (they train in float32)."""
    return "float32" if dtype == "auto" else dtype


def run_eval(cfg: EvalConfig, progress: bool = True) -> dict[str, Any]:
    if not cfg.model:
        raise MentaleseError("eval needs model=<hub name or path>")
    strategy = resolve_strategy(cfg.strategy, saved_latent_kind(cfg.model), cfg.soft_thinking is not None, cfg.model)
    if cfg.soft_thinking is not None:  # before loading the model
        cfg.soft_thinking.check_sampling(cfg.decode.sampling())

    def load(device: str):
        if strategy == "codi":
            from mentalese.methods.codi.model import load_codi

            codi, tokenizer = load_codi(cfg.model, dtype=codi_dtype(cfg.dtype), device=device)
            return (codi.lm, tokenizer, codi.strategy(cfg.decode.sampling()),
                    {"strategy": strategy, "method": "codi", "num_latent": codi.spec.num_latent})
        if strategy == "coconut":
            from mentalese.methods.coconut.model import load_coconut

            coconut, tokenizer = load_coconut(cfg.model, dtype=codi_dtype(cfg.dtype), device=device)
            return (coconut.lm, tokenizer, coconut.strategy(cfg.decode.sampling()),
                    {"strategy": strategy, "method": "coconut", "mode": coconut.spec.mode,
                     "num_latent": coconut.num_latent})
        model, tokenizer = load_model_and_tokenizer(cfg.model, dtype=cfg.dtype, device=device)
        decoding = None
        if strategy == "soft_thinking":
            from mentalese.decoding.soft_thinking import SoftThinkingStrategy

            decoding = SoftThinkingStrategy(cfg.soft_thinking, tokenizer)
        from mentalese.api import is_latent_bolt

        return model, tokenizer, decoding, {"strategy": strategy, **({"method": "bolt"} if is_latent_bolt(
            cfg.model, tokenizer) else {})}

    return run_with_model(cfg, load, progress)
