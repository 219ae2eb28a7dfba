"""`mentalese bench`: the one timer (by hand, with a fake clock) and each benchmark on a tiny random model.

The benchmarks' numbers are never asserted (timed tests are flaky); their shape, ratios and
recorded environment are.
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mentalese.commands.bench import BENCHES, run_bench
from mentalese.commands.bench import demo as demo_bench
from mentalese.commands.bench import timer
from mentalese.commands.bench.timer import time_call
from mentalese.config import load_config
from mentalese.errors import MentaleseError

ENV_KEYS = {"python", "torch", "transformers", "platform", "device"}


class FakeClock:
    """Each fn() call advances the clock by the next of the given durations."""

    def __init__(self, durations):
        self.durations, self.now, self.calls = list(durations), 0.0, 0

    def __call__(self) -> float:
        return self.now

    def fn(self):
        self.calls += 1
        self.now += self.durations.pop(0)
        return self.calls


def test_timer_takes_the_median_of_the_timed_repeats_and_skips_the_warmup():
    clock = FakeClock([100.0, 3.0, 1.0, 2.0])  # the 100 s warm-up must not count
    t = time_call(clock.fn, "cpu", repeats=3, warmup=1, clock=clock)
    assert t.seconds == [3.0, 1.0, 2.0] and t.median_s == 2.0
    assert t.result == 4 and clock.calls == 4  # the last timed call's return value


def test_timer_median_of_an_even_count_is_the_mean_of_the_middle_two():
    clock = FakeClock([4.0, 1.0, 3.0, 10.0])
    assert time_call(clock.fn, "cpu", repeats=4, warmup=0, clock=clock).median_s == 3.5


@pytest.mark.parametrize("device, expected_syncs", [("cpu", 0), ("cuda", 4), (torch.device("cuda:0"), 4)])
def test_timer_synchronizes_cuda_devices_only_around_each_timed_repeat(monkeypatch, device, expected_syncs):
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: synced.append(d))
    clock = FakeClock([1.0, 1.0, 1.0])
    time_call(clock.fn, device, repeats=2, warmup=1, clock=clock)
    assert len(synced) == expected_syncs  # before and after each of the 2 timed repeats, none for the warm-up
    assert all(torch.device(d).type == "cuda" for d in synced)


@pytest.mark.parametrize("repeats, warmup, message", [(0, 1, "repeats must be >= 1"), (1, -1, "warmup must be >= 0")])
def test_timer_rejects_bad_counts(repeats, warmup, message):
    with pytest.raises(MentaleseError, match=message):
        time_call(lambda: None, "cpu", repeats=repeats, warmup=warmup)


def test_every_benchmark_is_in_the_table_with_field_help():
    assert list(BENCHES) == ["decode", "demo", "soft", "codi-decode", "codi-train-step", "bolt-estep"]
    for name, command in BENCHES.items():
        assert command.help, name
        for f in dataclasses.fields(load_config(command.config)):
            assert f.metadata.get("help"), f"{name}.{f.name} has no help text"


def test_unknown_benchmark_names_the_choices():
    with pytest.raises(MentaleseError, match="unknown benchmark 'nope'; choose from decode, demo"):
        run_bench("nope")


def test_no_benchmark_times_with_its_own_clock():
    """The one timer: no benchmark module reads perf_counter / process_time except to pass it to it."""
    import inspect

    from mentalese.commands.bench import bolt_estep, codi_decode, codi_train_step, decode, soft

    for module in (bolt_estep, codi_decode, codi_train_step, decode, demo_bench, soft):
        assert "perf_counter()" not in inspect.getsource(module), module.__name__
        assert "synchronize" not in inspect.getsource(module), module.__name__
    assert timer.synchronize  # the one place


def test_decode_bench_writes_ratios_and_the_environment(tmp_path, one_thread):
    out = tmp_path / "decode.json"
    result = run_bench("decode", overrides=["width=32", "layers=1", "batch_sizes=[1, 3]", "max_new_tokens=4",
                                            "repeats=1", "device=cpu", f"output={out}"])
    assert json.loads(out.read_text()) == result
    assert ENV_KEYS <= set(result["environment"]) and result["environment"]["torch"] == torch.__version__
    assert [r["batch_size"] for r in result["results"]] == [1, 3]
    for r in result["results"]:
        assert r["outputs_equal"] is True
        assert r["throughput_ratio"] == pytest.approx(r["generate_s"] / r["mentalese_s"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_decode_bench_on_cuda_synchronizes_and_records_the_gpu(tmp_path):
    result = run_bench("decode", overrides=["width=64", "layers=1", "batch_sizes=[4]", "max_new_tokens=8",
                                            "repeats=2", "device=cuda", f"output={tmp_path / 'd.json'}"])
    assert result["environment"]["gpu"] and result["results"][0]["outputs_equal"] is True


def test_soft_bench_writes_per_step_ratios(tmp_path, one_thread):
    result = run_bench("soft", overrides=["width=32", "layers=1", "batch_sizes=[2]", "short_steps=2", "long_steps=4",
                                          "repeats=1", "modes=[vanilla]", "device=cpu", f"output_dir={tmp_path}"])
    assert json.loads((tmp_path / "soft_bench.json").read_text()) == result
    assert (tmp_path / "soft_bench.png").is_file() and result["clock"] == "process CPU time"
    (row,) = result["results"]
    assert row["vanilla_over_greedy"] == pytest.approx(row["vanilla_step_ms"] / row["greedy_step_ms"])
    assert ENV_KEYS <= set(result["environment"])


def test_bolt_estep_bench_writes_the_scoring_over_sampling_ratio(tmp_path, one_thread):
    out = tmp_path / "estep.json"
    result = run_bench("bolt-estep", overrides=["width=32", "layers=1", "documents=2", "num_samples=2",
                                                "max_thought_tokens=4", "device=cpu", f"output={out}"])
    assert json.loads(out.read_text()) == result
    assert result["proposals"] == 2 * 2 * 4  # K proposals for each of 4 chunks of 2 documents
    assert result["scoring_over_sampling"] == pytest.approx(result["scoring_seconds"] / result["sampling_seconds"])
    assert ENV_KEYS <= set(result["environment"])


@pytest.mark.slow  # two spawned children, each importing torch and transformers
def test_codi_train_step_bench_times_both_methods_in_child_processes(tmp_path):
    out = tmp_path / "step.json"
    result = run_bench("codi-train-step", overrides=["width=32", "layers=1", "batch_size=2", "num_latent=2",
                                                     "steps=1", f"output={out}"])
    assert json.loads(out.read_text()) == result
    for method in ("cot_sft", "codi"):
        assert result[method]["step_s_median"] > 0 and result[method]["memory_kind"] == "process peak RSS"
    assert result["codi_over_cot_time"] == pytest.approx(
        result["codi"]["step_s_median"] / result["cot_sft"]["step_s_median"])


def test_codi_decode_bench_on_random_models(tmp_path, one_thread):
    from mentalese.methods.codi.config import CODIConfig
    from mentalese.methods.codi.model import build_codi_model, save_codi
    from mentalese.models.tiny import build_tiny_model, char_tokenizer

    codi_cfg = load_config(CODIConfig, None, [f"output_dir={tmp_path / 'run'}", "report_to=none", "use_cpu=true",
                                              "num_latent=2"])
    model, tok = build_codi_model(codi_cfg)
    save_codi(model, tok, tmp_path / "codi")
    build_tiny_model("gpt2", char_tokenizer(), tmp_path / "cot")
    out = tmp_path / "bench" / "eff.json"
    result = run_bench("codi-decode", overrides=[
        f"codi_model={tmp_path / 'codi'}", f"cot_model={tmp_path / 'cot'}", "task_options={num_steps: 2}",
        "limit=4", "batch_1_limit=2", "batch_size=4", "max_new_tokens=8", "repeats=1", "device=cpu",
        f"output={out}"])
    assert json.loads(out.read_text()) == result
    assert result["batch_1"]["num_examples"] == 2 and result["batch_4"]["num_examples"] == 4
    for batch in ("batch_1", "batch_4"):
        row = result[batch]
        assert row["speedup"] == pytest.approx(row["cot_latency_s"] / row["codi_latency_s"])
    assert result["compression"] == pytest.approx(result["cot_sft_mean_cot_tokens"] / (2 + 2))
    assert ENV_KEYS <= set(result["environment"])


def test_demo_bench_runs_the_demo_through_the_new_cli_form(tmp_path, monkeypatch):
    calls = []

    def fake_run(cmd):
        calls.append(cmd)
        out_dir = next(a for a in cmd if a.startswith("output_dir=")).split("=", 1)[1]
        Path(out_dir, "results.json").write_text(json.dumps({"rows": {"CoT-SFT": {"accuracy": 1.0}}}))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(demo_bench, "run_child", fake_run)
    out = tmp_path / "demo.json"
    result = run_bench("demo", overrides=["quick=true", "demo_args=rows=[cot-sft] train_steps=5", f"output={out}"])
    (cmd,) = calls
    assert cmd[:4] == [sys.executable, "-m", "mentalese", "demo"] and cmd[4].startswith("output_dir=")
    assert cmd[5:] == ["quick=true", "rows=[cot-sft]", "train_steps=5"]
    assert result["exit_code"] == 0 and result["demo_results"]["rows"]["CoT-SFT"]["accuracy"] == 1.0
    assert json.loads(out.read_text()) == result and ENV_KEYS <= set(result["environment"])


@pytest.mark.parametrize("args", ["quick", "output_dir=elsewhere"])
def test_demo_bench_rejects_demo_args_it_cannot_pass(args):
    with pytest.raises(MentaleseError, match="demo_args must be key=value pairs other than output_dir"):
        load_config(BENCHES["demo"].config, None, [f"demo_args={args}"])


def test_demo_bench_fails_when_the_demo_fails_and_keeps_its_stderr(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_bench, "run_child",
                        lambda cmd: subprocess.CompletedProcess(cmd, 2, "", "trace\nmentalese: error: boom\n"))
    out = tmp_path / "demo.json"
    with pytest.raises(MentaleseError, match=r"the demo exited with code 2 \(mentalese: error: boom\)"):
        run_bench("demo", overrides=[f"output={out}"])
    assert json.loads(out.read_text())["stderr_tail"].endswith("boom\n")
