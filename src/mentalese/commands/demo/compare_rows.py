"""The rows of `mentalese demo compare`: every method of the CODI paper's comparison, trained the same way.

A row is a recipe plus overrides. Every row of one (variant, seed) trains on the same problems with the
same seed; rows marked `start="cot-sft"` fine-tune that seed's CoT-SFT model (it stands in for the
pretrained LM these methods assume, as in the papers); `start="mix-sft"` fine-tunes a CoT-SFT model
trained on a broad mix of chain lengths (2-6 operations; 1-operation chains mod 10 number only 270, too
few for 5000 training problems): the "pretrained-like base" route for plain CODI.
Adding a row = one entry in `ROWS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CompareRow:
    label: str  # the table's method column
    recipe: str  # a shipped recipe (family/name)
    overrides: tuple[str, ...] = ()  # key=value on top of the recipe
    start: str | None = None  # "cot-sft" | "mix-sft" | None (train from the recipe's model)
    thoughts: bool = False  # the model has latent thoughts: measure whether they matter
    note: str = ""  # what the row is for (the report's row list)
    extra: dict = field(default_factory=dict)


PLAIN_CODI = ("step_supervision.kind=none",)
RESULT_TOKEN = ("step_supervision.kind=result_token", "step_supervision.weight=1")
STEP_DECODER = ("step_supervision.kind=step_decoder", "step_supervision.weight=1")

ROWS: dict[str, CompareRow] = {
    "nocot-sft": CompareRow("No-CoT-SFT", "sft/chain_nocot", note="answers directly, no thoughts"),
    "cot-sft": CompareRow("CoT-SFT", "sft/chain_cot", note="writes the steps, then the answer"),
    "icot": CompareRow("iCoT-SI", "icot/chain", start="cot-sft", note="CoT tokens removed from the left on a schedule"),
    "icot-800": CompareRow("iCoT-SI, 800 steps", "icot/chain", ("max_steps=800",), start="cot-sft",
                           note="the same, at the 800 optimizer steps of the other rows (the recipe: 400)"),
    "coconut": CompareRow("Coconut", "coconut/chain", start="cot-sft", thoughts=True,
                          note="curriculum: stage k replaces k steps by k*c continuous thoughts"),
    "coconut-no-curriculum": CompareRow("Coconut w/o curriculum", "coconut/chain_no_curriculum", start="cot-sft",
                                        thoughts=True, note="trained at the last stage from the start"),
    "coconut-step": CompareRow("Coconut + step supervision", "coconut/chain", RESULT_TOKEN, start="cot-sft",
                               thoughts=True, note="+ per-thought result-token loss (not in Coconut)"),
    "coconut-simcot": CompareRow("Coconut + SIM-CoT step decoder", "coconut/chain", STEP_DECODER, start="cot-sft",
                                 thoughts=True, note="+ SIM-CoT's auxiliary decoder: each thought writes its step"),
    "codi": CompareRow("CODI", "codi/chain", PLAIN_CODI, start="cot-sft", thoughts=True,
                       note="plain CODI (self-distillation only)"),
    "codi-step": CompareRow("CODI + step supervision", "codi/chain", RESULT_TOKEN, start="cot-sft", thoughts=True,
                            note="+ per-thought result-token loss (not in CODI)"),
    "codi-simcot": CompareRow("CODI + SIM-CoT step decoder", "codi/chain_simcot", start="cot-sft", thoughts=True,
                              note="+ SIM-CoT's auxiliary decoder: each thought writes its step"),
    "no-thought": CompareRow("no-thought student (control)", "codi/chain", ("num_latent=0", *PLAIN_CODI),
                             start="cot-sft", note="CODI's training budget and losses with 0 thoughts"),
    "codi-mix-base": CompareRow("CODI from a pretrained-like base", "codi/chain", PLAIN_CODI, start="mix-sft",
                                thoughts=True, note="plain CODI from a CoT-SFT model of chains of 2-6 operations"),
}

# the start models: trained once per (variant, seed) when a row needs them
STARTS: dict[str, CompareRow] = {
    "cot-sft": ROWS["cot-sft"],
    "mix-sft": CompareRow("CoT-SFT on mixed chain lengths", "sft/chain_cot", extra={"num_steps": [2, 3, 4, 5, 6]}),
}
DEFAULT_ROWS = list(ROWS)
SHUFFLED_ROWS = ["nocot-sft", "cot-sft", "icot", "coconut", "codi-step"]  # the sceptic's control variant
