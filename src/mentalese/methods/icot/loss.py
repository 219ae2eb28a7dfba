"""The iCoT-SI loss: plain next-token cross-entropy on what is left of the CoT and on the answer.

Official `ImplicitModel.compute_loss`: logits[:, :-1] against labels[:, 1:], `CrossEntropyLoss()` (mean
over every label != -100 in the batch: a token mean, not a mean of per-row means), and token accuracy
from the argmax. `position_ids` reach the model only when given (keep_position), as in the official forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mentalese.methods.icot.removal import IGNORE_INDEX


@dataclass
class ICoTLoss:
    loss: torch.Tensor  # scalar, mean over labelled tokens
    total_correct: torch.Tensor  # labelled tokens whose argmax is right
    total_tokens: torch.Tensor  # labelled tokens

    @property
    def token_accuracy(self) -> torch.Tensor:
        return self.total_correct / self.total_tokens


def icot_loss(logits: torch.Tensor, labels: torch.Tensor) -> ICoTLoss:
    """Shifted CE, mean over the labelled tokens of the whole batch (no labelled token: NaN, as torch's)."""
    shift_logits = logits[..., :-1, :].float()
    shift_labels = labels[..., 1:]
    mask = shift_labels.ne(IGNORE_INDEX)
    loss = F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
                           ignore_index=IGNORE_INDEX)
    correct = ((shift_logits.argmax(-1) == shift_labels) & mask).sum()
    return ICoTLoss(loss, correct, mask.sum())


def compute_icot_loss(model, input_ids: torch.Tensor, labels: torch.Tensor, position_ids: torch.Tensor | None = None,
                      attention_mask: torch.Tensor | None = None) -> ICoTLoss:
    """Forward `model` (a causal LM, possibly DDP-wrapped) and take `icot_loss` of its logits."""
    kwargs = {"input_ids": input_ids}
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask
    if position_ids is not None:
        kwargs["position_ids"] = position_ids
    return icot_loss(model(**kwargs).logits, labels)
