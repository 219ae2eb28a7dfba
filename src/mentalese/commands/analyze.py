"""`mentalese analyze <tool> [recipe] [key=value ...]`: the analysis tools, each writes JSON (+ PNG).

    soft-js          JS(soft, top-1/top-2) per thinking step        analysis/soft_commands.py
    soft-logit-lens  logit lens of a two-token soft input           analysis/soft_commands.py
    soft-rouge       ROUGE-L of soft/stochastic traces vs greedy    analysis/soft_commands.py
    soft-passk       pass@k curves of sampling/soft/Dirichlet/Gumbel analysis/soft_commands.py
    codi-probe       CODI's continuous thoughts as top-k tokens     analysis/codi_probe.py
    thoughts         do the thoughts matter? swap/zero/noise/truncate analysis/thought_interventions.py
                     the thoughts of CODI, Coconut, BoLT, soft thinking (docs/thought_interventions.md)
"""

from __future__ import annotations

from mentalese.analysis.codi_probe import ProbeConfig, run_probe
from mentalese.analysis.soft_commands import (
    SoftAnalysisConfig,
    run_soft_js,
    run_soft_logit_lens,
    run_soft_passk,
    run_soft_rouge,
)
from mentalese.analysis.thought_interventions import ThoughtsConfig, run_thoughts
from mentalese.commands import Command

ANALYSES: dict[str, Command] = {
    "soft-js": Command(SoftAnalysisConfig, run_soft_js,
                       "soft thinking: JS(soft, top-1/top-2) per thinking step -> js.json + js.png"),
    "soft-logit-lens": Command(SoftAnalysisConfig, run_soft_logit_lens,
                               "soft thinking: logit lens of a two-token soft input -> logit_lens.json + .png"),
    "soft-rouge": Command(SoftAnalysisConfig, run_soft_rouge,
                          "soft thinking: ROUGE-L of soft/stochastic traces vs greedy -> rouge.json + .png"),
    "soft-passk": Command(SoftAnalysisConfig, run_soft_passk,
                          "soft thinking: pass@k curves of sampling/soft/Dirichlet/Gumbel -> passk.json + .png"),
    "codi-probe": Command(ProbeConfig, run_probe,
                          "CODI: decode the continuous thoughts into top-k tokens -> probe.json/.md/.png"),
    "thoughts": Command(ThoughtsConfig, run_thoughts,
                        "do the thoughts matter? swap/zero/noise/truncate them (CODI, Coconut, BoLT, soft thinking): "
                        "accuracy, gold log-likelihood, attention mass -> thoughts.json + .png"),
}
