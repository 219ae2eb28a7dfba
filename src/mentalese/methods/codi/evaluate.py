"""`mentalese codi-eval`: a saved CODI model on any registered benchmark through the harness.

Same `EvalConfig` as `mentalese eval` (model = a `save_codi` directory); decoding goes through
`CODIStrategy`, so `decode.max_new_tokens` counts the n + 2 latent steps. Sharded like every
harness run: resumable after a crash, split across processes under torchrun.
"""

from __future__ import annotations

from typing import Any

from mentalese.errors import MentaleseError
from mentalese.evaluation.harness import EvalConfig
from mentalese.evaluation.run import run_with_model


def run_codi_eval(cfg: EvalConfig, progress: bool = True) -> dict[str, Any]:
    from mentalese.methods.codi.model import load_codi

    if not cfg.model:
        raise MentaleseError("codi-eval needs model=<saved CODI directory>")

    def load(device: str):
        model, tokenizer = load_codi(cfg.model, dtype="float32" if cfg.dtype == "auto" else cfg.dtype, device=device)
        return (model.lm, tokenizer, model.strategy(cfg.decode.sampling()),
                {"method": "codi", "num_latent": model.spec.num_latent})

    return run_with_model(cfg, load, progress)
