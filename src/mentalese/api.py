"""The Python API: train from a recipe, evaluate any saved model, load one and decode.

    import mentalese

    model_dir = mentalese.train("sft/chain_cot", {"output_dir": "runs/cot", "max_steps": 200})
    metrics = mentalese.evaluate(model=str(model_dir), benchmark="chain", limit=50)
    loaded = mentalese.load(model_dir)                       # plain, CODI or BoLT, recognised by itself
    print(loaded.decode([loaded.prompt("9*2*5-9+3")], max_new_tokens=64)[0].text)

`train` reads the recipe's family (`method: sft | codi | bolt`, else its shipped folder) and runs that
family's trainer (`FAMILIES`). The CLI (`mentalese train`, `mentalese eval`) calls these functions.
Overrides are `key=value` strings as on the command line, or a mapping (nested, or with dotted keys).

What `load` recognises, from the files of a saved model:
- codi: a `save_codi` directory (codi_config.json); decodes with its continuous thoughts (CODIStrategy).
- coconut: a `save_coconut` directory (coconut_config.json); decodes with its thoughts (CoconutStrategy).
- bolt: a model whose tokenizer has the four BoLT tokens (<|start_of_latent|>, ...) and that is not the
  raw baseline of a BoLT run (whose config.yaml, up to three folders above, says mode: raw). It decodes
  token by token; its prompts take the layout its M-step trained: `prompt_template(t)` is
  BOS (when the tokenizer adds none) + t + `<|start_of_latent|><|prior|>`, so the model writes its thought,
  then `<|end_of_latent|>` and the answer; decoding stops at the next `<|start_of_latent|>` (the next
  chunk's thought), as the BoLT evaluation does (methods/bolt/em.py).
- plain: anything else (a hub name, an SFT model, a BoLT raw baseline).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from mentalese.commands import Command
from mentalese.config import build_config, config_to_dict, merge, parse_overrides
from mentalese.errors import MentaleseError
from mentalese.recipes import EVAL_METHOD, METHOD_KEY, declared_method, recipe_values, resolve_recipe

Overrides = Sequence[str] | Mapping[str, Any] | None


def _train_sft(cfg) -> Path:
    from mentalese.methods.sft import train_sft

    return train_sft(cfg)


def _train_codi(cfg) -> Path:
    from mentalese.methods.codi.trainer import train_codi

    return train_codi(cfg)


def _train_bolt(cfg) -> Path:
    """run_bolt (every mode, synthesize included); the path of its result (methods/bolt/em.py result_dir)."""
    from mentalese.methods.bolt.em import result_dir, run_bolt

    run_bolt(cfg)  # writes output_dir/summary.json (mode=synthesize: output_dir/teacher/)
    return result_dir(cfg)


def _train_icot(cfg) -> Path:
    from mentalese.methods.icot.trainer import train_icot

    return train_icot(cfg)


def _train_coconut(cfg) -> Path:
    from mentalese.methods.coconut.trainer import train_coconut

    return train_coconut(cfg)


def _families() -> dict[str, Command]:
    from mentalese.methods.bolt.config import BoltConfig
    from mentalese.methods.coconut.config import CoconutConfig
    from mentalese.methods.codi.config import CODIConfig
    from mentalese.methods.icot.config import ICoTConfig
    from mentalese.methods.sft import SFTConfig

    return {
        "sft": Command(SFTConfig, _train_sft, "supervised fine-tuning (CoT-SFT / No-CoT-SFT); returns the model dir"),
        "codi": Command(CODIConfig, _train_codi, "CODI (continuous CoT by self-distillation); returns the model dir"),
        "bolt": Command(BoltConfig, _train_bolt, "BoLT: warm start + EM (mode=em|teacher|raw), or the teacher "
                                                 "thoughts alone (mode=synthesize); returns the last model dir"),
        "icot": Command(ICoTConfig, _train_icot, "iCoT-SI (stepwise internalization: CoT tokens removed from the "
                                                 "left during fine-tuning); returns the model dir (a plain LM)"),
        "coconut": Command(CoconutConfig, _train_coconut, "Coconut (continuous thoughts, stage curriculum); "
                                                          "returns the model dir (output_dir/model)"),
    }


FAMILIES: dict[str, Command] = _families()  # recipe family -> config class + train function (returns a Path)


def recipe_family(recipe: str | Path) -> str:
    """The family of a recipe (a shipped name or a YAML path): a key of FAMILIES, or "eval"."""
    path = resolve_recipe(recipe)
    method = declared_method(path)
    if method is None:
        raise MentaleseError(f"recipe {path} does not say its method; add `{METHOD_KEY}: "
                             f"{'|'.join(FAMILIES)}` (or `{METHOD_KEY}: {EVAL_METHOD}` for an evaluation recipe)")
    if method not in FAMILIES and method != EVAL_METHOD:
        raise MentaleseError(f"recipe {path} has {METHOD_KEY}: {method}; choose one of "
                             f"{', '.join([*FAMILIES, EVAL_METHOD])}")
    return method


def override_values(overrides: Overrides) -> dict[str, Any]:
    """`key=value` strings, or a mapping whose keys may be dotted ("decode.max_new_tokens"), as a nested dict."""
    if overrides is None:
        return {}
    if isinstance(overrides, str):
        raise MentaleseError(f"overrides must be a list of key=value strings or a mapping, got {overrides!r}")
    if not isinstance(overrides, Mapping):
        return parse_overrides(list(overrides))
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        *parents, leaf = str(key).split(".")
        nested = {leaf: dict(value) if isinstance(value, Mapping) else value}
        for p in reversed(parents):
            nested = {p: nested}
        out = merge(out, nested)
    return out


def _recipe_config(cls: type, path: Path, overrides: Overrides):
    """What `mentalese.config.load_config` builds, from the recipe without its `method:` key."""
    return build_config(cls, merge(recipe_values(path), override_values(overrides)), where=str(path))


def train_config(recipe: str | Path, overrides: Overrides = None) -> tuple[str, Any]:
    """(family, config) of a training recipe with `overrides` applied; nothing runs."""
    path = resolve_recipe(recipe)
    family = recipe_family(path)
    if family == EVAL_METHOD:
        raise MentaleseError(f"recipe {path} is an evaluation recipe ({METHOD_KEY}: {EVAL_METHOD}); "
                             f"run it with `mentalese eval {recipe}` or mentalese.evaluate()")
    return family, _recipe_config(FAMILIES[family].config, path, overrides)


def train(recipe: str | Path, overrides: Overrides = None) -> Path:
    """Train what the recipe is (its family: sft, codi, bolt); returns the trained model's directory
    (BoLT: the last iteration's model; mode=synthesize: output_dir/teacher). Finished runs are not redone."""
    family, cfg = train_config(recipe, overrides)
    return Path(FAMILIES[family].run(cfg))


def eval_config(recipe: str | Path | None = None, overrides: Overrides = None):
    """The `EvalConfig` of an evaluation recipe (optional; `method: eval`) with `overrides` applied."""
    from mentalese.evaluation.harness import EvalConfig

    if recipe is None:
        return build_config(EvalConfig, override_values(overrides))
    path = resolve_recipe(recipe)
    method = recipe_family(path) if declared_method(path) is not None else None  # a user's YAML may omit it
    if method not in (None, EVAL_METHOD):
        raise MentaleseError(f"recipe {path} is a training recipe ({METHOD_KEY}: {method}); train it with "
                             f"`mentalese train {recipe}`, evaluate the model it writes with model=<dir>")
    return _recipe_config(EvalConfig, path, overrides)


def evaluate(config=None, *, progress: bool = True, **values) -> dict[str, Any]:
    """Evaluate a model on a benchmark: `config` (an EvalConfig) and/or its fields as keywords (nested
    mappings or dotted names: decode={"max_new_tokens": 64}). A saved CODI model is recognised by itself
    (strategy="auto"). Writes predictions.jsonl and metrics.json to output_dir; returns the metrics."""
    from mentalese.evaluation.harness import EvalConfig
    from mentalese.evaluation.run import run_eval

    if config is not None and not isinstance(config, EvalConfig):
        raise MentaleseError(f"evaluate() takes an EvalConfig or keywords, got {type(config).__name__}")
    base = config_to_dict(config) if config is not None else {}
    if config is None or values:
        config = build_config(EvalConfig, merge(base, override_values(values)), where="evaluate()")
    return run_eval(config, progress=progress)


@dataclass
class LoadedModel:
    """A saved model with what decodes it: `decode(prompts, **decode_fields)` uses the right strategy."""

    model: Any  # the causal LM the decode loop runs (CODI: the LM inside `codi`)
    tokenizer: Any
    kind: str  # "plain" | "codi" | "coconut" | "bolt"
    path: str
    codi: Any = None  # the CODIModel (kind "codi"): projection, <bot>/<eot> ids, spec
    coconut: Any = None  # the CoconutModel (kind "coconut"): token ids, spec
    stop_token_ids: list[int] = field(default_factory=list)  # stop ids every decode adds (bolt: SOL)

    def strategy(self, name: str = "auto", soft_thinking=None, record_thoughts: bool = False):
        """The InputStrategy for this model: name auto | token | soft_thinking | codi | coconut (as
        EvalConfig.strategy); `soft_thinking`: a SoftThinkingConfig or a mapping of its fields;
        `record_thoughts`: CODI and Coconut only."""
        from mentalese.decoding.soft_thinking import SoftThinkingConfig, SoftThinkingStrategy
        from mentalese.decoding.strategies import DiscreteStrategy
        from mentalese.evaluation.run import check_strategy_name, resolve_strategy

        if isinstance(soft_thinking, Mapping):
            soft_thinking = build_config(SoftThinkingConfig, dict(soft_thinking), where="soft_thinking")
        check_strategy_name(name)
        if name == "soft_thinking" and soft_thinking is None:
            soft_thinking = SoftThinkingConfig()  # the papers' settings, as EvalConfig takes them
        latent_kind = self.kind if self.kind in ("codi", "coconut") else None
        chosen = resolve_strategy(name, latent_kind, soft_thinking is not None, self.path)
        if record_thoughts and chosen not in ("codi", "coconut"):
            raise MentaleseError(f"record_thoughts applies to CODI models only (and Coconut ones), "
                                 f"not to strategy={chosen}")
        if chosen in ("codi", "coconut"):
            return getattr(self, chosen).strategy(record_thoughts=record_thoughts)
        if chosen == "soft_thinking":
            return SoftThinkingStrategy(soft_thinking, self.tokenizer)
        return DiscreteStrategy()

    def prompt_template(self, template: str = "{question}\n") -> str:
        """`template` in the layout this model was trained on (bolt: see the module docstring)."""
        if self.kind != "bolt":
            return template
        from mentalese.methods.bolt.em import prompt_layout

        return prompt_layout(self.tokenizer, template, latent=True)

    def prompt(self, question: str, template: str = "{question}\n") -> str:
        """One question in `template`, laid out for this model."""
        from mentalese.tasks.registry import render_prompt

        return render_prompt(self.prompt_template(template), question)

    def decode(self, prompts: Sequence[str] | Sequence[Sequence[int]], strategy=None, progress: bool = False,
               **decode_fields) -> list:
        """decoding.loop.decode with this model's strategy (or `strategy`: an InputStrategy or its name);
        `decode_fields` are DecodeConfig fields (max_new_tokens=64, do_sample=True, ...). Prompts are
        used as given: lay them out with `prompt`/`prompt_template`."""
        from mentalese.decoding.loop import DecodeConfig, decode

        if strategy is None or isinstance(strategy, str):
            strategy = self.strategy(strategy or "auto")
        config = build_config(DecodeConfig, decode_fields, where="decode")
        if self.stop_token_ids:
            config.stop_token_ids = sorted({*config.stop_token_ids, *self.stop_token_ids})
        return decode(self.model, self.tokenizer, prompts, config, strategy, progress=progress)


def load(path: str | Path, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """Load a saved model (a local directory or a hub name) and recognise its kind (module docstring)."""
    from mentalese.evaluation.run import codi_dtype, is_saved_coconut, is_saved_codi
    from mentalese.methods.bolt.data_format import BoltTokenIds
    from mentalese.models.loading import load_model_and_tokenizer

    if is_saved_codi(path):
        from mentalese.methods.codi.model import load_codi

        codi, tokenizer = load_codi(path, dtype=codi_dtype(dtype), device=device)
        return LoadedModel(codi.lm, tokenizer, "codi", str(path), codi=codi)
    if is_saved_coconut(path):
        from mentalese.methods.coconut.model import load_coconut

        coconut, tokenizer = load_coconut(path, dtype=codi_dtype(dtype), device=device)
        return LoadedModel(coconut.lm, tokenizer, "coconut", str(path), coconut=coconut)
    model, tokenizer = load_model_and_tokenizer(path, dtype=dtype, device=device)
    if is_latent_bolt(path, tokenizer):
        sol = BoltTokenIds.from_tokenizer(tokenizer).sol
        return LoadedModel(model, tokenizer, "bolt", str(path), stop_token_ids=[sol])
    return LoadedModel(model, tokenizer, "plain", str(path))


def is_latent_bolt(path: str | Path, tokenizer) -> bool:
    """A BoLT model trained with thoughts: its tokenizer has the BoLT tokens, and it is not a `mode=raw` run's."""
    from mentalese.methods.bolt.data_format import BOLT_TOKENS

    vocab = tokenizer.get_vocab()
    return all(t in vocab for t in BOLT_TOKENS) and _bolt_run_mode(Path(path)) != "raw"


def _bolt_run_mode(model_dir: Path) -> str | None:
    """The `mode` of the BoLT run whose config.yaml sits up to three folders above `model_dir`
    (output_dir/iter_<i>/mstep/model), else None."""
    from mentalese.config import read_yaml

    for folder in [model_dir, *model_dir.parents][:4]:
        config = folder / "config.yaml"
        if config.is_file():
            values = read_yaml(config)
            if {"mode", "corpus", "estep"} <= set(values):
                return values["mode"]
    return None
