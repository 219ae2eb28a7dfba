"""iCoT-SI, Stepwise Internalization (Deng, Choi, Shieber 2024): fine-tune a CoT model while its CoT tokens
are removed from the left, a few more each epoch, until it answers with no CoT at all (docs/icot.md).

    removal.py   the batch transform (official train.py layout), smoothing offsets
    schedule.py  tokens scheduled per step; when the optimizer is reset
    loss.py      the official token-mean CE
    data.py      training rows in the library's CoT layout, with their CoT spans
    config.py    ICoTConfig
    trainer.py   ICoTTrainer, train_icot
"""

from mentalese.methods.icot.config import ICoTConfig
from mentalese.methods.icot.loss import ICoTLoss, compute_icot_loss, icot_loss
from mentalese.methods.icot.removal import (
    CoTSpans,
    RemovedBatch,
    lambda_distribution,
    official_cot_spans,
    remove_cot_official,
    remove_cot_tokens,
    sample_offsets,
)
from mentalese.methods.icot.schedule import RemovalSchedule, should_reset_optimizer, steps_per_removed_token

__all__ = ["CoTSpans", "ICoTConfig", "ICoTLoss", "RemovalSchedule", "RemovedBatch", "compute_icot_loss",
           "icot_loss", "lambda_distribution", "official_cot_spans", "remove_cot_official", "remove_cot_tokens",
           "sample_offsets", "should_reset_optimizer", "steps_per_removed_token"]
