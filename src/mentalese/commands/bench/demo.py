"""`mentalese bench demo`: wall time and peak resident memory of `mentalese demo` in a child process.

The child is `python -m mentalese demo output_dir=<temp> [quick=true] [demo_args ...]`; the
verbosity switch (`-v`) reaches it through the environment. Its results.json is copied into ours;
if it fails, our JSON keeps its stderr tail and the benchmark fails too.
"""

from __future__ import annotations

import json
import resource
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mentalese.commands.bench.record import environment, write_result
from mentalese.commands.bench.timer import time_call
from mentalese.config import config_to_dict
from mentalese.errors import MentaleseError


@dataclass
class DemoBenchConfig:
    quick: bool = field(default=False, metadata={"help": "benchmark the quick demo setting"})
    demo_args: str = field(default="", metadata={
        "help": "more key=value arguments of the demo, space-separated (e.g. 'rows=[cot-sft] train_steps=50')"})
    output: str = field(default="runs/bench/demo.json", metadata={"help": "JSON output path"})

    def __post_init__(self) -> None:
        bad = [a for a in shlex.split(self.demo_args) if "=" not in a or a.startswith("output_dir=")]
        if bad:
            raise MentaleseError(f"demo_args must be key=value pairs other than output_dir, got {bad}")


def demo_command(cfg: DemoBenchConfig, output_dir: str) -> list[str]:
    quick = ["quick=true"] if cfg.quick else []
    return [sys.executable, "-m", "mentalese", "demo", f"output_dir={output_dir}", *quick, *shlex.split(cfg.demo_args)]


def run_child(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


def bench_demo(cfg: DemoBenchConfig) -> dict[str, Any]:
    out_dir = tempfile.mkdtemp(prefix="mentalese-demo-bench-")
    cmd = demo_command(cfg, out_dir)
    run = time_call(lambda: run_child(cmd), "cpu", repeats=1, warmup=0)
    proc, wall = run.result, run.median_s  # one run of minutes: no warm-up, no repeats
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB
    result = {"benchmark": "demo", "config": config_to_dict(cfg), "environment": environment("cpu"),
              "command": " ".join(cmd[1:]), "exit_code": proc.returncode, "wall_time_s": wall,
              "peak_rss_mib": peak_kib / 1024}
    results_file = Path(out_dir) / "results.json"
    if proc.returncode == 0 and results_file.exists():
        result["demo_results"] = json.loads(results_file.read_text())
        return write_result(cfg.output, result)
    result["stderr_tail"] = proc.stderr[-2000:]
    write_result(cfg.output, result)
    last = proc.stderr.strip().splitlines()[-1:] or ["no stderr"]
    raise MentaleseError(f"the demo exited with code {proc.returncode} ({last[0]}); see {cfg.output}")
