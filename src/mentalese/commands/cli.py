"""The `mentalese` command line: one grammar for every method.

    mentalese [-v] <verb> [<which>] [<recipe>] [key=value ...]

An argument with "=" overrides a config field (nested ones dotted: decode.max_new_tokens=64); the first
one without, after <which>, is the recipe: a shipped name (`mentalese recipes`) or a YAML path.
`mentalese <verb> [<which> | <recipe>] --help` lists the config fields with their types, defaults, help.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mentalese.console import set_verbose, verbose
from mentalese.errors import MentaleseError

RECIPE_NOTE = ("A recipe is a shipped name (`mentalese recipes`) or a YAML path; key=value sets any field below "
               "(nested ones dotted, e.g. decode.max_new_tokens=64; values are YAML).")
EVAL_KEYS = ("benchmark", "num_examples", "accuracy", "accuracy_flexible", "mean_generated_tokens",
             "latency_per_example_s", "throughput_examples_per_s")

# verbs that no longer exist -> (the new form, a note)
OLD_VERBS = {
    "codi-train": ("mentalese train <codi recipe>", "e.g. codi/chain"),
    "codi-eval": ("mentalese eval model=<CODI model dir> benchmark=...", "a CODI model is recognised by itself"),
    "codi-probe": ("mentalese analyze codi-probe", ""),
    "codi-efficiency": ("mentalese bench codi-decode", "or `mentalese bench codi-train-step`"),
    "soft-js": ("mentalese analyze soft-js", ""),
    "soft-logit-lens": ("mentalese analyze soft-logit-lens", ""),
    "soft-rouge": ("mentalese analyze soft-rouge", ""),
    "soft-passk": ("mentalese analyze soft-passk", ""),
    "soft-bench": ("mentalese bench soft", ""),
    "bolt-em": ("mentalese train <bolt recipe>", "e.g. bolt/toy_chain"),
    "bolt-synthesize": ("mentalese train <bolt recipe> mode=synthesize", ""),
    "bolt-toy": ("mentalese demo bolt-toy", ""),
    "bolt-bench": ("mentalese bench bolt-estep", ""),
}


class UsageError(MentaleseError):
    """Bad command line (exit code 2, like every other error)."""


@dataclass
class Args:
    """A verb's arguments: the words without "=" in order, the key=value overrides, --help."""

    words: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    help: bool = False


def split_args(argv: list[str]) -> Args:
    args = Args()
    for a in argv:
        if a in ("-h", "--help"):
            args.help = True
        elif a in ("-v", "--verbose"):
            set_verbose(True)
        elif a == "--recipe" or a.startswith("--recipe="):
            raise UsageError("`--recipe PATH` is now a positional argument: `mentalese <verb> PATH [key=value ...]`")
        elif "=" in a:
            args.overrides.append(a)
        elif a.startswith("-"):
            raise UsageError(f"unknown option {a!r}; options: -v/--verbose, -h/--help (config fields are key=value)")
        else:
            args.words.append(a)
    return args


def _at_most(args: Args, n: int, usage: str) -> None:
    if len(args.words) > n:
        raise UsageError(f"unexpected argument {args.words[n]!r} (overrides are key=value); usage: {usage}")


def _recipe_path(name: str | None) -> Path | None:
    from mentalese.recipes import resolve_recipe

    if name and "/" not in name and not name.endswith((".yaml", ".yml")) and not Path(name).is_file():
        raise UsageError(f"{name!r} is neither a recipe nor key=value (`mentalese recipes` lists the shipped ones)")
    return resolve_recipe(name) if name else None


def _is_recipe(name: str) -> bool:
    try:
        _recipe_path(name)
    except MentaleseError:
        return False
    return True


def _build(config: type, recipe: str | None, overrides: list[str]):
    from mentalese.config import load_config

    return load_config(config, _recipe_path(recipe), overrides)


def _print_fields(usage: str, help_text: str, config: type) -> None:
    from mentalese.config import format_fields

    print(f"usage: {usage}\n\n{help_text}\n\n{RECIPE_NOTE}\n\nfields of {config.__name__}:\n{format_fields(config)}")


def _print_json(result: Any) -> None:
    if isinstance(result, dict):  # per-step series stay in the JSON file
        result = {k: v for k, v in result.items() if k != "by_step"}
    print(json.dumps(result, indent=2, default=str))


# --- the verbs -------------------------------------------------------------------------------------------

def cmd_train(args: Args) -> None:
    from mentalese import api
    from mentalese.sharding import current_processes

    usage = "mentalese train <recipe> [key=value ...]"
    _at_most(args, 1, usage)
    if not args.words:
        if args.help:
            return print(train_help())
        raise UsageError(f"train needs a recipe; usage: {usage} (`mentalese train --help` lists them)")
    recipe = args.words[0]
    path = _recipe_path(recipe)
    if args.help:
        family = api.recipe_family(path)
        if family not in api.FAMILIES:
            raise UsageError(f"recipe {recipe!r} is an evaluation recipe; `mentalese eval {recipe} --help` "
                             f"lists its fields")
        command = api.FAMILIES[family]
        return _print_fields(f"mentalese train {recipe} [key=value ...]", f"{family}: {command.help}", command.config)
    family, cfg = api.train_config(path, args.overrides)
    result = api.FAMILIES[family].run(cfg)
    if current_processes().is_main:  # every process of a multi-process launch returns: print once
        summary = Path(cfg.output_dir) / "summary.json"
        if family == "bolt" and cfg.mode != "synthesize" and summary.is_file():  # the EM table
            print(summary.read_text(encoding="utf-8").strip())
        print(f"{'teacher thoughts' if getattr(cfg, 'mode', None) == 'synthesize' else 'model'}: {result}")


def train_help() -> str:
    from mentalese import api
    from mentalese.recipes import list_recipes, resolve_recipe

    by_family: dict[str, list[str]] = {name: [] for name in api.FAMILIES}
    for name in list_recipes():
        try:
            by_family.setdefault(api.recipe_family(resolve_recipe(name)), []).append(name)
        except MentaleseError:  # not a training recipe (e.g. an eval recipe)
            continue
    lines = ["usage: mentalese train <recipe> [key=value ...]", "",
             "Trains what the recipe is: its family is the recipe's `method:` key, else its shipped folder.", ""]
    for name, command in api.FAMILIES.items():
        lines += [f"  {name:6s} {command.help}", f"         recipes: {', '.join(by_family.get(name, [])) or '-'}"]
    lines += ["", "`mentalese train <recipe> --help` lists the config fields of the recipe's family."]
    return "\n".join(lines)


def cmd_eval(args: Args) -> None:
    from mentalese import api
    from mentalese.evaluation.harness import EvalConfig
    from mentalese.sharding import current_processes

    usage = "mentalese eval [<recipe>] model=<dir or hub name> benchmark=... [key=value ...]"
    _at_most(args, 1, usage)
    if args.help:
        return _print_fields(usage, VERBS["eval"].help, EvalConfig)
    cfg = api.eval_config(_recipe_path(args.words[0]) if args.words else None, args.overrides)
    metrics = api.evaluate(cfg)
    if current_processes().is_main:  # every process of a multi-process launch returns the metrics: print once
        print(json.dumps({k: metrics[k] for k in EVAL_KEYS if k in metrics}, indent=2))
    _fail_on_decode_errors(metrics, cfg.output_dir)


def _fail_on_decode_errors(metrics: dict, output_dir: str) -> None:
    """Generations that stopped on NaN/inf logits count as wrong: the scores are then not the model's."""
    if metrics.get("num_errors"):
        total = metrics["num_examples"] * metrics.get("num_samples", 1)
        raise MentaleseError(f"{metrics['num_errors']} of {total} generations stopped on non-finite (NaN/inf) "
                             f"logits; the per-example errors are in {output_dir}/predictions.jsonl")


def run_from_table(verb: str, noun: str, table: dict, args: Args, default: str | None = None,
                   show: Callable[[Any], None] = _print_json) -> None:
    """`mentalese <verb> <which> [recipe] [k=v]` for a table of Commands (`default`: <which> may be left out)."""
    which = f"[<{noun}>]" if default else f"<{noun}>"
    usage = f"mentalese {verb} {which} [<recipe>] [key=value ...]"
    _at_most(args, 2, usage)
    words = list(args.words)
    if default and ((not words and not args.help) or (words and words[0] not in table and _is_recipe(words[0]))):
        words.insert(0, default)  # `mentalese demo [recipe] [k=v]`: the default demo
    if not words:
        if args.help:
            return print(table_help(verb, noun, table, usage, default))
        raise UsageError(f"{verb} needs a {noun}: {', '.join(table)}; usage: {usage}")
    name = words[0]
    if name not in table:
        close = difflib.get_close_matches(name, table, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"unknown {noun} {name!r}{hint}; choose from {', '.join(table)}")
    _at_most(Args(words), 2, usage)
    command = table[name]
    if args.help:
        return _print_fields(f"mentalese {verb} {name} [<recipe>] [key=value ...]", command.help, command.config)
    show(command.run(_build(command.config, words[1] if len(words) > 1 else None, args.overrides)))


def table_help(verb: str, noun: str, table: dict, usage: str, default: str | None) -> str:
    width = max(len(n) for n in table)
    rows = [f"  {n:{width}}  {c.help}{'  (default)' if n == default else ''}" for n, c in table.items()]
    return "\n".join([f"usage: {usage}", "", f"{noun}s:", *rows, "",
                      f"`mentalese {verb} <{noun}> --help` lists its config fields."])


def cmd_analyze(args: Args) -> None:
    from mentalese.commands.analyze import ANALYSES

    run_from_table("analyze", "tool", ANALYSES, args)


def cmd_bench(args: Args) -> None:
    from mentalese.commands.bench import BENCHES

    run_from_table("bench", "benchmark", BENCHES, args)


def cmd_demo(args: Args) -> None:
    from mentalese.commands.demo import DEMOS

    run_from_table("demo", "demo", DEMOS, args, default="chain", show=lambda report: print(f"report: {report}"))


def cmd_list_benchmarks(args: Args) -> None:
    from mentalese.tasks.registry import get_benchmark, list_benchmarks

    _at_most(args, 0, "mentalese benchmarks")
    if args.help:
        return print(f"usage: mentalese benchmarks\n\n{VERBS['benchmarks'].help}")
    for name in list_benchmarks():
        spec = get_benchmark(name)
        print(f"{name:14s} v{spec.version}  splits={','.join(spec.splits)}  {spec.description}")


def cmd_list_recipes(args: Args) -> None:
    from mentalese.recipes import list_recipes

    _at_most(args, 0, "mentalese recipes")
    if args.help:
        return print(f"usage: mentalese recipes\n\n{VERBS['recipes'].help}")
    print("\n".join(list_recipes()))


@dataclass(frozen=True)
class Verb:
    args: str  # what follows the verb in the usage line
    help: str
    run: Callable[[Args], None]


VERBS = {
    "train": Verb("<recipe>", "train what the recipe is: sft | codi | coconut | icot | bolt (EM)", cmd_train),
    "eval": Verb("[<recipe>] model=...", "evaluate any saved model (a CODI model is recognised by itself) on a "
                 "benchmark; strategy=auto|token|soft_thinking|codi", cmd_eval),
    "analyze": Verb("<tool>", "analysis tools: soft-js, soft-logit-lens, soft-rouge, soft-passk, codi-probe, thoughts",
                    cmd_analyze),
    "bench": Verb("<benchmark>", "speed/memory benchmarks -> JSON: decode, demo, soft, codi-decode, "
                  "codi-train-step, bolt-estep", cmd_bench),
    "demo": Verb("[<demo>]", "train and compare tiny models, write a report: chain (default), bolt-toy, compare", cmd_demo),
    "benchmarks": Verb("", "list the registered benchmarks", cmd_list_benchmarks),
    "recipes": Verb("", "list the shipped recipes", cmd_list_recipes),
}


def main_help() -> str:
    rows = [f"  {name} {verb.args}".ljust(32) + verb.help for name, verb in VERBS.items()]
    return "\n".join([
        "usage: mentalese [-v] <verb> [<which>] [<recipe>] [key=value ...]", "",
        "Reasoning in latent space with HF models: one grammar for every method.", "", "verbs:", *rows, "",
        "options:",
        "  -v, --verbose                 print Trainer's per-log dicts too (they always go to the run's log)",
        "  -h, --help                    this text; `mentalese <verb> [<which> | <recipe>] --help` lists config fields",
        "", RECIPE_NOTE.replace(" below", "")])


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    if verbose():
        transformers.utils.logging.set_verbosity_warning()
    else:
        transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    for noisy in ("httpx", "datasets", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def dispatch(argv: list[str]) -> None:
    """Top-level options, then the verb (old and unknown verbs: an error naming the new form)."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i] in ("-h", "--help"):
            return print(main_help())
        if argv[i] not in ("-v", "--verbose"):
            raise UsageError(f"unknown option {argv[i]!r}; usage: mentalese [-v] <verb> ... (`mentalese --help`)")
        set_verbose(True)
        i += 1
    if i == len(argv):
        raise UsageError(f"no verb given; verbs: {', '.join(VERBS)} (`mentalese --help`)")
    verb, rest = argv[i], argv[i + 1:]
    if verb in OLD_VERBS:
        new, note = OLD_VERBS[verb]
        raise UsageError(f"`{verb}` is now `{new}`" + (f" ({note})" if note else ""))
    if verb not in VERBS:
        close = difflib.get_close_matches(verb, list(VERBS) + list(OLD_VERBS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"unknown verb {verb!r}{hint}; verbs: {', '.join(VERBS)}")
    args = split_args(rest)
    _quiet_libraries()
    VERBS[verb].run(args)


def main(argv: list[str] | None = None) -> int:
    try:
        dispatch(list(sys.argv[1:] if argv is None else argv))
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
