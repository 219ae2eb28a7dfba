"""The command line: one-line errors with a non-zero exit, listing commands, eval end to end."""

import json
import subprocess
import sys

import pytest

from mentalese.commands.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mentalese", *args], capture_output=True, text=True)


@pytest.mark.parametrize("args, message", [
    (["eval", "model=x", "benchmark=gsm9k"], "unknown benchmark 'gsm9k'"),
    (["eval", "model=x", "decode.temperature=-1"], "temperature must be"),
    (["eval", "model=x", "decode.top_p=1.5"], "top_p must be in (0, 1]"),
    (["eval", "modle=x"], "unknown key 'modle'"),
    (["train", "sft/chain_cot", "output_dir=/tmp/x", "learning_rat=1"], "did you mean 'learning_rate'"),
    (["train", "no/such/recipe"], "recipe 'no/such/recipe' not found"),
    (["demo", "train_examples=0"], "train_examples must be >= 1"),
    (["eval", "model=/no/such/model", "benchmark=chain"], "cannot load model"),
])
def test_bad_input_is_one_line_error(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mentalese: error:") and message in err
    assert len(err.splitlines()) == 1


def test_bad_input_exit_code_in_a_real_process():
    proc = run_cli("eval", "model=x", "benchmark=nope")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("mentalese: error: unknown benchmark")


def test_list_commands(capsys):
    assert main(["benchmarks"]) == 0
    out = capsys.readouterr().out
    assert "chain" in out and "gsm8k" in out and "math500" in out
    assert main(["recipes"]) == 0
    assert "sft/chain_cot" in capsys.readouterr().out


def test_eval_command(tiny_chain_run, tmp_path, capsys):
    args = ["eval", f"model={tiny_chain_run / 'model'}", "benchmark=chain", "limit=8", "device=cpu",
            f"output_dir={tmp_path}", "task_options={num_steps: 2}", "decode.max_new_tokens=32"]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["num_examples"] == 8
    assert json.loads((tmp_path / "metrics.json").read_text())["accuracy"] == printed["accuracy"]
