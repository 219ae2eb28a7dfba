"""`mentalese demo [which] [key=value ...]`: the demos, as `Command`s the CLI runs.

    chain     the main demo: tiny models on the chain task, one table    run.py, rows.py, report.py
    bolt-toy  the BoLT toy experiment (raw vs teacher vs EM)              methods/bolt/experiment.py
    compare   the CODI paper's comparison, 3 seeds per row, 2 variants    compare.py, compare_rows.py

The rows of the chain demo: `rows.ROWS` (baselines sft_rows.py, codi_rows.py, soft_thinking_rows.py,
bolt_rows.py), an explicit table: importing this package registers nothing anywhere.
"""

from __future__ import annotations

from mentalese.commands import Command
from mentalese.commands.demo.compare import CompareConfig, run_compare
from mentalese.commands.demo.run import DemoConfig, run_demo
from mentalese.methods.bolt.experiment import ToyExperimentConfig, run_toy_experiment

DEMOS: dict[str, Command] = {
    "chain": Command(DemoConfig, run_demo, "tiny models on the chain task: baselines, CODI, soft thinking, BoLT; "
                                           "writes report.md and table.md"),
    "bolt-toy": Command(ToyExperimentConfig, run_toy_experiment,
                        "the BoLT toy experiment: raw-only vs teacher thoughts vs EM (about 45 min on one core)"),
    "compare": Command(CompareConfig, run_compare, "No-CoT/CoT-SFT, iCoT-SI, Coconut, CODI (+ step supervision) and "
                                                   "controls on the chain task, 3 seeds; writes report.md, table.md"),
}

__all__ = ["DEMOS", "DemoConfig", "run_demo"]
