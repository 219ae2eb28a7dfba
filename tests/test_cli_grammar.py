"""The one CLI grammar, driven through `main()` (the `mentalese` entry point): train with an SFT, a CODI and
a BoLT recipe, eval of a plain and a CODI model, analyze, `--help` of every verb, old and unknown verbs."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mentalese import api
from mentalese.commands import Command
from mentalese.commands import cli
from mentalese.commands.analyze import ANALYSES
from mentalese.commands.bench import BENCHES
from mentalese.commands.cli import OLD_VERBS, VERBS, main
from mentalese.commands.demo import DEMOS
from mentalese.config import FieldRow, describe_fields, format_fields
from mentalese.console import VERBOSE_ENV
from mentalese.evaluation.harness import EvalConfig
from mentalese.methods.sft import SFTConfig

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest

TINY = ["max_steps=2", "save_steps=100", "per_device_train_batch_size=8", "disable_tqdm=true", "use_cpu=true",
        "task_options={num_steps: 2, num_examples: 64}"]
TRAIN = {
    "sft": ["sft/chain_cot", *TINY],
    "codi": ["codi/chain", "num_latent=1", *TINY],
    "bolt": ["bolt/toy_chain", "mode=teacher", "model_name_or_path=tiny-gpt2", "tiny_model_options={n_positions: 256}",
             "toy_options.documents=8", "teacher_docs=8", "seq_len=16", "max_steps=2", "save_steps=1000",
             "per_device_train_batch_size=4", "task_options.num_examples=4", "eval_max_new_tokens=8", "use_cpu=true",
             "disable_tqdm=true"],
}
EVAL = ["benchmark=chain", "limit=4", "device=cpu", "task_options={num_steps: 2}", "decode.max_new_tokens=16"]


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Each family trained once through `mentalese train <recipe>`: {family: (run dir, stdout)}."""
    out = {}
    for family, args in TRAIN.items():
        run_dir = tmp_path_factory.mktemp(family)
        capture = _Capture()
        with capture:
            assert main(["train", *args, f"output_dir={run_dir}"]) == 0
        out[family] = (run_dir, capture.text)
    return out


class _Capture:
    """stdout of a block (capsys is function-scoped; the training fixture is module-scoped)."""

    def __enter__(self):
        import io

        self._old, sys.stdout = sys.stdout, io.StringIO()
        return self

    def __exit__(self, *exc):
        self.text, sys.stdout = sys.stdout.getvalue(), self._old


@pytest.mark.slow
@pytest.mark.parametrize("family", list(TRAIN))
def test_train_runs_what_the_recipe_is(trained, family):
    run_dir, printed = trained[family]
    model_dir = printed.strip().splitlines()[-1].removeprefix("model: ")
    assert (run_dir / "config.yaml").is_file() and model_dir.startswith(str(run_dir))
    if family == "bolt":  # the EM summary, then the model
        assert json.loads(printed[:printed.rindex("}") + 1])["iterations"][0]["kind"] == "warm start"
    weights = "model/model.safetensors" if family == "codi" else "model.safetensors"
    assert (Path(model_dir) / weights).is_file()
    assert api.load(model_dir, device="cpu").kind == {"sft": "plain", "codi": "codi", "bolt": "bolt"}[family]


@pytest.mark.slow
@pytest.mark.parametrize("family, method", [("sft", None), ("codi", "codi")])
def test_eval_recognises_the_model(trained, family, method, tmp_path, capsys):
    """A plain and a CODI model through the same `mentalese eval`, no strategy given."""
    code, out, err = run(capsys, "eval", f"model={trained[family][0] / 'model'}", f"output_dir={tmp_path}", *EVAL)
    assert code == 0, err
    printed = json.loads(out[out.index("{"):])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert printed["num_examples"] == 4 and printed["accuracy"] == metrics["accuracy"]
    assert metrics.get("method") == method


@pytest.mark.slow
def test_analyze_codi_probe(trained, tmp_path, capsys):
    code, out, err = run(capsys, "analyze", "codi-probe", f"model={trained['codi'][0] / 'model'}", "limit=2",
                         "max_new_tokens=8", "device=cpu", "task_options={num_steps: 2}", f"output_dir={tmp_path}")
    assert code == 0, err
    assert json.loads(out)["num_latent"] == 1 and (tmp_path / "probe.json").is_file()


def test_analyze_a_soft_tool(tmp_path, capsys):
    from mentalese.models import build_tiny_model, char_tokenizer

    model = build_tiny_model("llama", char_tokenizer(extra_tokens=["<think>", "</think>"]), tmp_path / "m")
    code, out, err = run(capsys, "analyze", "soft-js", f"model={model}", "limit=2", "max_new_tokens=4", "device=cpu",
                         "task_options={num_steps: 2, num_examples: 20}", f"output_dir={tmp_path / 'js'}")
    assert code == 0, err
    printed = json.loads(out)
    assert printed["num_prompts"] == 2 and "by_step" not in printed  # the per-step series stays in js.json
    assert "by_step" in json.loads((tmp_path / "js" / "js.json").read_text())


# --- --help: the fields of the config, with their help texts --------------------------------------------------

def assert_lists_fields(out: str, config: type) -> None:
    rows = describe_fields(config)
    assert rows
    for row in rows:
        assert row.name in out and row.help in out


HELP_CASES = ([(["eval"], EvalConfig)]
              + [(["train", recipe], api.FAMILIES[family].config)
                 for family, recipe in [("sft", "sft/chain_cot"), ("codi", "codi/chain"), ("bolt", "bolt/toy_chain")]]
              + [(["analyze", name], c.config) for name, c in ANALYSES.items()]
              + [(["bench", name], c.config) for name, c in BENCHES.items()]
              + [(["demo", name], c.config) for name, c in DEMOS.items()])


@pytest.mark.parametrize("args, config", HELP_CASES, ids=[" ".join(a) for a, _ in HELP_CASES])
def test_help_lists_the_config_fields(args, config, capsys):
    code, out, _ = run(capsys, *args, "--help")
    assert code == 0
    assert f"fields of {config.__name__}" in out
    assert_lists_fields(out, config)


def test_help_of_sft_names_the_trainer_fields_once(capsys):
    _, out, _ = run(capsys, "train", "sft/chain_cot", "--help")
    assert "and every transformers TrainingArguments field (see its docs)" in out
    assert "per_device_train_batch_size" not in out  # not our field: transformers' docs list it
    assert "train with the CoT (CoT-SFT) or without (No-CoT-SFT)" in out


def test_help_without_which_lists_the_choices(capsys):
    _, out, _ = run(capsys, "train", "--help")
    for family in api.FAMILIES:
        assert f"  {family} " in out
    assert "sft/chain_cot" in out and "codi/chain" in out and "bolt/toy_chain" in out
    for verb, table in [("analyze", ANALYSES), ("bench", BENCHES), ("demo", DEMOS)]:
        _, out, _ = run(capsys, verb, "--help")
        assert all(name in out and command.help in out for name, command in table.items())
    _, out, _ = run(capsys, "--help")
    assert out.startswith("usage: mentalese [-v] <verb>") and all(f"  {verb} " in out for verb in VERBS)


def test_top_level_help_names_every_table_entry():
    """The verb lines of `mentalese --help` name what the tables hold (they are written out, not read)."""
    for verb, table in [("analyze", ANALYSES), ("bench", BENCHES), ("demo", DEMOS), ("train", api.FAMILIES)]:
        assert all(name in VERBS[verb].help for name in table), verb


def test_python_dash_m_mentalese():
    proc = subprocess.run([sys.executable, "-m", "mentalese", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "mentalese train" not in proc.stderr and "verbs:" in proc.stdout


# --- old verbs, unknown verbs, bad arguments -----------------------------------------------------------------

@pytest.mark.parametrize("verb", list(OLD_VERBS))
def test_old_verb_names_the_new_form(verb, capsys):
    code, _, err = run(capsys, verb, "some/recipe", "x=1")
    new, _ = OLD_VERBS[verb]
    assert code == 2 and err == err.splitlines()[0]
    assert err.startswith(f"mentalese: error: `{verb}` is now `{new}`")
    words = new.split()  # the new form exists: its verb and <which>
    assert words[0] == "mentalese" and words[1] in VERBS
    table = {"analyze": ANALYSES, "bench": BENCHES, "demo": DEMOS}.get(words[1])
    if table is not None:
        assert words[2] in table


def test_unknown_verb_lists_the_verbs(capsys):
    code, _, err = run(capsys, "trian", "sft/chain_cot")
    assert code == 2 and len(err.splitlines()) == 1
    assert "unknown verb 'trian' (did you mean 'train'?)" in err and ", ".join(VERBS) in err
    code, _, err = run(capsys)
    assert code == 2 and "no verb given" in err


@pytest.mark.parametrize("args, message", [
    (["train"], "train needs a recipe"),
    (["train", "sft/chain_cot", "extra"], "unexpected argument 'extra'"),
    (["train", "soft_thinking/chain_toy", "--help"], "is an evaluation recipe"),
    (["eval", "--recipe", "x.yaml"], "`--recipe PATH` is now a positional argument"),
    (["eval", "--fast"], "unknown option '--fast'"),
    (["analyze"], "analyze needs a tool: soft-js"),
    (["analyze", "soft-jss"], "unknown tool 'soft-jss' (did you mean 'soft-js'?)"),
    (["bench", "codi-efficiency"], "unknown benchmark 'codi-efficiency'"),
    (["demo", "bolt-tyo"], "unknown demo 'bolt-tyo' (did you mean 'bolt-toy'?)"),
    (["recipes", "sft"], "unexpected argument 'sft'"),
])
def test_bad_arguments_are_one_line_errors(args, message, capsys):
    code, _, err = run(capsys, *args)
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("mentalese: error:") and message in err


# --- dispatch of <which> and <recipe>, -v ---------------------------------------------------------------------

@dataclass
class FakeConfig:
    size: int = field(default=1, metadata={"help": "how big"})
    note: str = ""


def fake_table(calls: list):
    return {"chain": Command(FakeConfig, lambda cfg: calls.append(("chain", cfg)), "the default"),
            "other": Command(FakeConfig, lambda cfg: calls.append(("other", cfg)), "another one")}


@pytest.mark.parametrize("words, expected", [
    ([], ("chain", FakeConfig())),
    (["other", "size=3"], ("other", FakeConfig(size=3))),
    (["RECIPE", "note=x"], ("chain", FakeConfig(size=7, note="x"))),  # a recipe, no <which>: the default
    (["other", "RECIPE"], ("other", FakeConfig(size=7))),
])
def test_which_then_recipe(words, expected, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: fake\nsize: 7\n")  # `method:` names the family; it is not a field
    calls = []
    args = cli.split_args([str(recipe) if w == "RECIPE" else w for w in words])
    cli.run_from_table("demo", "demo", fake_table(calls), args, default="chain", show=lambda r: None)
    assert calls == [expected]


def test_verbose_flag(monkeypatch, capsys):
    for argv in (["-v", "recipes"], ["recipes", "--verbose"]):
        monkeypatch.setenv(VERBOSE_ENV, "0")
        assert main(argv) == 0
        assert cli.os.environ[VERBOSE_ENV] == "1"
    capsys.readouterr()


# --- describe_fields ------------------------------------------------------------------------------------------

@dataclass
class Inner:
    k: int = field(default=2, metadata={"help": "inner k"})


@dataclass
class Outer:
    required: float
    name: str = field(default="x", metadata={"help": "a name"})
    items: list[str] | None = None
    inner: Inner = field(default_factory=lambda: Inner(k=5), metadata={"help": "nested settings"})
    maybe: Inner | None = field(default=None, metadata={"help": "off unless set"})


def test_describe_fields_expands_nested_configs():
    assert describe_fields(Outer) == [
        FieldRow("required", "float", "(required)", ""),
        FieldRow("name", "str", "'x'", "a name"),
        FieldRow("items", "list[str] | None", "null", ""),
        FieldRow("inner", "Inner", "", "nested settings"),
        FieldRow("inner.k", "int", "5", "inner k"),  # the default of the outer default, not Inner's own 2
        FieldRow("maybe", "Inner | None", "null", "off unless set"),
        FieldRow("maybe.k", "int", "2", "inner k"),
    ]


def test_describe_fields_leaves_out_trainer_fields_unless_redeclared():
    names = {row.name for row in describe_fields(SFTConfig)}
    assert {"model_name_or_path", "cot", "lora.r"} <= names
    assert not names & {"per_device_train_batch_size", "learning_rate", "seed"}  # transformers' own
    assert format_fields(SFTConfig).endswith("and every transformers TrainingArguments field (see its docs)")
    assert "TrainingArguments" not in format_fields(EvalConfig)
