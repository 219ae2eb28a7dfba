"""Bad input, gathered in one place: every case exits non-zero with ONE line naming the problem, and leaves
no partial or corrupted output behind.

Cases go through `mentalese.commands.cli.main` in-process (exit code 2, stderr captured); one runs in a real
process to show that no traceback is printed. "No partial output" means: no result file
(metrics.json, predictions.jsonl, train_metrics.json, model/), no temporary file, and a config.yaml,
when one was written before the failure, that parses.
"""

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mentalese.commands.cli import main
from mentalese.models.tiny import build_tiny_model, char_tokenizer

PROGRESS_BAR = re.compile(r"^[\w ]*: +\d+%\|")  # tqdm lines of a run that got as far as decoding
RESULTS = ("metrics.json", "predictions.jsonl", "train_metrics.json", "trainer_state.json", "model")


def run_cli_error(capsys, *args) -> str:
    """Run the CLI, check the exit code and that stderr is exactly one `mentalese: error:` line; return it."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.strip().splitlines() if not PROGRESS_BAR.match(line)]
    assert code == 2, captured
    assert len(lines) == 1 and lines[0].startswith("mentalese: error: "), lines
    return lines[0]


def assert_no_partial_outputs(out: Path) -> None:
    if not out.exists():
        return
    names = sorted(p.name for p in out.rglob("*"))
    assert not [n for n in names if n in RESULTS or n.endswith(".tmp")], names
    if (out / "config.yaml").exists():
        assert isinstance(yaml.safe_load((out / "config.yaml").read_text()), dict)


# --------------------------------------------------------------------------------------------
# Data files (eval reads the benchmark before loading the model, so no model is needed)

GSM8K_ROW = {"question": "2+3?", "answer": "2+3=5\n#### 5"}
DATA_CASES = {
    "malformed-jsonl-line": ("gsm8k", "gsm8k/test.jsonl", (json.dumps(GSM8K_ROW) + "\n{\"question\": \n").encode(),
                             "gsm8k/test.jsonl:2: malformed JSON line"),
    "missing-field": ("gsm8k", "gsm8k/test.jsonl", json.dumps({"question": "2+3?"}).encode(),
                      "gsm8k row test-0: missing field 'answer'"),
    "row-not-an-object": ("gsm8k", "gsm8k/test.jsonl", b"[1, 2]\n", "expected a JSON object, got list"),
    "no-final-answer": ("gsm8k", "gsm8k/test.jsonl", json.dumps({"question": "q", "answer": "5"}).encode(),
                        "no '####' before the final answer"),
    "non-utf8-jsonl": ("gsm8k", "gsm8k/test.jsonl", json.dumps(GSM8K_ROW).encode() + b"\n{\"question\": \"\xff\xfe\"}\n",
                       "gsm8k/test.jsonl:2: not UTF-8 text (bad byte 0xff"),
    "empty-jsonl": ("gsm8k", "gsm8k/test.jsonl", b"\n\n", "benchmark 'gsm8k' split 'test' is empty"),
    "text-row-without-separator": ("gsm8k-aug", "gsm8k_aug_icot/test.txt", b"what is 2+3 #### 5\n",
                                   "gsm8k-aug row test-0: no '||' between question and chain of thought"),
    "unparseable-answer": ("gsm8k-aug", "gsm8k_aug_icot/test.txt", b"2+3?||<<2+3=5>> #### five\n",
                           "unparseable number 'five'"),
    "non-utf8-json": ("svamp", "svamp/SVAMP.json", b'[{"Body": "\xc3\x28"}]', "not UTF-8 text"),
    "malformed-json": ("svamp", "svamp/SVAMP.json", b'[{"Body": ', "svamp/SVAMP.json: malformed JSON"),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data_file(case, tmp_path, capsys):
    bench, rel, content, message = DATA_CASES[case]
    data = tmp_path / "data"
    (data / rel).parent.mkdir(parents=True)
    (data / rel).write_bytes(content)
    out = tmp_path / "out"
    err = run_cli_error(capsys, "eval", "model=unused", f"benchmark={bench}", f"data_dir={data}", f"output_dir={out}")
    assert message in err
    assert not out.exists()


def test_no_traceback_in_a_real_process(tmp_path):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_bytes(b"\x80\x81\n")
    proc = subprocess.run([sys.executable, "-m", "mentalese", "eval", "model=unused", "benchmark=gsm8k",
                           f"data_dir={tmp_path}", f"output_dir={tmp_path / 'out'}"], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"mentalese: error: {tmp_path}/gsm8k/test.jsonl:1: not UTF-8 text "
                                                "(bad byte 0x80 at offset 0)"]


# --------------------------------------------------------------------------------------------
# Recipes and config values

RECIPE_CASES = {
    "invalid-yaml": (b"learning_rate: [1, 2\n", "is not valid YAML"),
    "not-a-mapping": (b"- 1\n- 2\n", "must be a mapping of config keys"),
    "non-utf8": (b"seed: 1\n# \xff\n", "is not UTF-8 text"),
    "no-method": (b"seed: 1\n", "does not say its method; add `method: sft|codi|bolt|icot|coconut`"),
    "unknown-key": (b"method: sft\nlearning_rat: 0.1\n", "unknown key 'learning_rat'"),
    "wrong-type": (b"method: sft\nseed: [1, 2]\n", "seed: expected int"),
}


@pytest.mark.parametrize("case", list(RECIPE_CASES))
def test_bad_recipe_file(case, tmp_path, capsys):
    content, message = RECIPE_CASES[case]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_bytes(content)
    out = tmp_path / "out"
    assert message in run_cli_error(capsys, "train", recipe, f"output_dir={out}")
    assert not out.exists()


OVERRIDE_CASES = [
    (["eval", "modle=x"], "unknown key 'modle' in config (did you mean 'model'?)"),
    (["eval", "model=x", "limit"], "'limit' is neither a recipe nor key=value"),
    (["eval", "model=x", "num_samples=abc"], "config.num_samples: expected int, got 'abc'"),
    (["eval", "model=x", "num_samples=0"], "num_samples must be >= 1, got 0"),
    (["eval", "model=x", "decode.temperature=-1"], "temperature must be"),
    (["eval", "model=x", "decode.top_p=1.5"], "top_p must be in (0, 1]"),
    (["train", "sft/chain_cot", "learning_rate=-1"], "learning_rate must be >= 0, got -1.0"),
    (["train", "sft/chain_cot", "per_device_train_batch_size=0"], "per_device_train_batch_size must be >= 1, got 0"),
    (["train", "sft/chain_cot", "max_length=2"], "max_length must be >= 8, got 2"),
    (["train", "codi/chain", "num_latent=-1"], "num_latent must be >= 0, got -1"),
    (["train", "codi/chain", "gradient_accumulation_steps=0"], "gradient_accumulation_steps must be >= 1"),
    (["eval", "model=x", "benchmark=gsm9k"], "unknown benchmark 'gsm9k'"),
    (["train", "sft/chain_cot", "task=gsm9k"], "unknown benchmark 'gsm9k'"),
    (["train", "sft/chain_cot", "model_name_or_path=tiny-gpt5"], "unknown tiny model 'tiny-gpt5'"),
    (["train", "no/such/recipe"], "recipe 'no/such/recipe' not found"),
    (["eval", "model=/no/such/model", "benchmark=chain", "limit=2"], "cannot load model '/no/such/model'"),
]


@pytest.mark.parametrize("args, message", OVERRIDE_CASES, ids=[" ".join(a[1:]) for a, _ in OVERRIDE_CASES])
def test_bad_override(args, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert message in run_cli_error(capsys, *args, f"output_dir={out}")
    assert_no_partial_outputs(out)


# --------------------------------------------------------------------------------------------
# Models and tokenizers


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, one_thread):
    """A random tiny GPT-2 and broken copies of it: NaN weights, pickle-only weights, no pad/eos token."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("models")
    tok = char_tokenizer()
    good = build_tiny_model("gpt2", tok, root / "good")
    model = AutoModelForCausalLM.from_pretrained(good)

    with torch.no_grad():
        model.lm_head.weight.fill_(float("nan"))  # tied: the input embedding is NaN too
    model.save_pretrained(root / "nan")
    tok.save_pretrained(root / "nan")

    model = AutoModelForCausalLM.from_pretrained(good)
    model.save_pretrained(root / "pickle")  # transformers 5 writes safetensors only: swap in a pickle file
    (root / "pickle" / "model.safetensors").unlink()
    torch.save(model.state_dict(), root / "pickle" / "pytorch_model.bin")
    tok.save_pretrained(root / "pickle")

    model.save_pretrained(root / "no_pad")
    PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, unk_token="<unk>").save_pretrained(root / "no_pad")
    return root


MODEL_CASES = {
    "nan-logits": ("nan", [], "4 of 4 generations stopped on non-finite (NaN/inf) logits"),
    "pickle-only-weights": ("pickle", [], "has only pickle weights (pytorch_model.bin), no .safetensors"),
    "tokenizer-without-pad-or-eos": ("no_pad", [], "tokenizer has no pad token (and no eos to reuse)"),
    "tokenizer-without-think-tokens": ("good", ["soft_thinking.mode=vanilla"], "</think>"),
}


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_bad_model_or_tokenizer(case, tiny_models, tmp_path, capsys):
    name, extra, message = MODEL_CASES[case]
    out = tmp_path / "out"
    err = run_cli_error(capsys, "eval", f"model={tiny_models / name}", "benchmark=chain", "limit=4", "device=cpu",
                        "decode.max_new_tokens=4", f"output_dir={out}", *extra)
    assert message in err
    if case == "nan-logits":  # complete results that record the failure, not a silent accuracy of 0
        rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
        assert [s["stop_reason"] for r in rows for s in r["samples"]] == ["error"] * 4
        assert json.loads((out / "metrics.json").read_text())["num_errors"] == 4
    else:
        assert_no_partial_outputs(out)


def test_pickle_weights_load_only_when_asked(tiny_models):
    from mentalese.models.loading import load_model_and_tokenizer

    model, _ = load_model_and_tokenizer(tiny_models / "pickle", dtype="float32", device="cpu",
                                        allow_pickle_weights=True)
    reference, _ = load_model_and_tokenizer(tiny_models / "good", dtype="float32", device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))


def test_trust_remote_code_is_off_unless_asked(tiny_models, monkeypatch):
    import transformers

    from mentalese.models import loading

    seen = []
    real = transformers.AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(loading.AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    loading.load_model_and_tokenizer(tiny_models / "good", dtype="float32", device="cpu")
    loading.load_model_and_tokenizer(tiny_models / "good", dtype="float32", device="cpu", trust_remote_code=True)
    assert seen == [False, True]


# --------------------------------------------------------------------------------------------
# Output directory: read-only, disk full


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode == 0


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nothing can be written into: chmod 0o555, or (as root, whom chmod does not stop) a
    read-only tmpfs; skipped when neither is possible."""
    path = tmp_path / "ro"
    if os.geteuid() != 0:
        path.mkdir()
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
    elif _mount_tmpfs(path, "ro,size=1m"):
        yield path
        subprocess.run(["umount", str(path)], check=True)
    else:
        pytest.skip("running as root without permission to mount a read-only tmpfs")


@pytest.fixture
def full_disk_dir(tmp_path):
    """A 64 KiB tmpfs filled up to its last 4 KiB page (room for config.yaml, not for the results)."""
    path = tmp_path / "full"
    if os.geteuid() != 0 or not _mount_tmpfs(path, "size=64k"):
        pytest.skip("needs root and permission to mount a tmpfs")
    try:
        (path / "filler").write_bytes(b"\0" * (60 * 1024))
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_read_only_output_dir(read_only_dir, capsys):
    err = run_cli_error(capsys, "train", "sft/chain_cot", f"output_dir={read_only_dir}", "max_steps=1")
    assert str(read_only_dir) in err and ("Permission denied" in err or "Read-only file system" in err)
    assert list(read_only_dir.iterdir()) == []


def test_disk_full_while_writing_results(full_disk_dir, tiny_models, capsys):
    out = full_disk_dir / "eval"
    err = run_cli_error(capsys, "eval", f"model={tiny_models / 'good'}", "benchmark=chain", "limit=64", "device=cpu",
                        "decode.max_new_tokens=24", f"output_dir={out}")
    assert "No space left on device" in err
    assert_no_partial_outputs(out)


def test_disk_full_while_writing_the_config(tmp_path, capsys, monkeypatch):
    # works without root: the first write of a run (config.yaml) fails half-way with ENOSPC
    import mentalese.atomic_files as atomic_files

    real_fdopen = os.fdopen

    class HalfWrite:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), None)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(atomic_files.os, "fdopen", lambda fd, mode: HalfWrite(real_fdopen(fd, mode)))
    out = tmp_path / "out"
    err = run_cli_error(capsys, "train", "sft/chain_cot", f"output_dir={out}", "max_steps=1")
    assert err == "mentalese: error: No space left on device"
    assert sorted(p.name for p in out.iterdir()) == []  # neither config.yaml nor its temporary file
