"""Stepwise Internalization's data transform: drop the first s+o CoT tokens of every row.

Everything here is a pure tensor function, written after the training loop of the official code
(da03/Internalize_CoT_Step_by_Step, src/train.py at c2e3891), so that a batch transformed here is
token for token the batch that loop builds:

    official layout   ' question <eos> cot <eos> #### answer <eos>'  (padded with eos, labels -100)
    labels            -100 up to and including the first <eos>; the CoT, the second <eos>, the answer
                      and the last <eos> are labelled
    removal (left)    tokens [cot_start, cot_start + s + o) go, capped at cot_end: the second <eos> (the
                      CoT/answer separator) always stays
    removal (right)   tokens [cot_end - s - o, cot_end) go, capped at cot_start
    keep_position     position_ids = arange(L), and from the position of the first <eos> on (cot_start - 1)
                      every position is shifted by the number of removed tokens; so the first <eos> takes
                      the position just before the first kept CoT token (official: `[removal_from-1:] +=`)

`s` is the scheduled count (schedule.py; `inf` = remove all) and `o` a per-row offset drawn from
P(o) ∝ exp(-lambda * o) (`lambda_distribution`; "removal smoothing"). Capping is the official
behaviour: a row whose CoT is shorter than s+o loses its whole CoT and nothing else; `RemovedBatch.capped`
says which rows that was, so the trainer counts them (never silent).

The library's own layout (data.py) gives the spans directly instead of through <eos> positions:
prompt | CoT (+ the "\\n" before the answer prompt when `remove_separator`) | answer + eos.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from mentalese.errors import MentaleseError

IGNORE_INDEX = -100
REMOVAL_SIDES = ("left", "right")


def lambda_distribution(smoothing_lambda: float, truncate_length: int = 100) -> torch.Tensor:
    """P(o) = (1 - e^-lambda) e^(-lambda o) for o = 0..truncate_length-1, the tail mass added to the last
    bucket (official `compute_lambda_distribution`); lambda = inf gives P(0) = 1 (no smoothing)."""
    if not smoothing_lambda > 0:
        raise MentaleseError(f"removal_smoothing_lambda must be > 0 (or inf), got {smoothing_lambda}")
    if truncate_length < 1:
        raise MentaleseError(f"truncate_length must be >= 1, got {truncate_length}")
    if math.isinf(smoothing_lambda):
        dist = torch.zeros(truncate_length)
        dist[0] = 1.0
        return dist
    positions = torch.arange(truncate_length)
    dist = (1 - math.exp(-smoothing_lambda)) * positions.mul(-smoothing_lambda).exp()
    dist[-1] = dist[-1] + (1 - dist.sum())
    return dist


def sample_offsets(distribution: torch.Tensor, batch_size: int, generator: torch.Generator | None = None
                   ) -> torch.Tensor:
    """One offset per row, drawn as the official code draws them (multinomial with replacement)."""
    return torch.multinomial(distribution, batch_size, replacement=True, generator=generator)


@dataclass
class CoTSpans:
    """Per row: the CoT is [start, end); the row's real tokens end at `seq_end` (exclusive)."""

    start: list[int]
    end: list[int]
    seq_end: list[int]


@dataclass
class RemovedBatch:
    input_ids: torch.Tensor  # [B, L'] re-padded with pad_id
    labels: torch.Tensor  # [B, L'] re-padded with -100
    position_ids: torch.Tensor | None  # [B, L'] when keep_position, else None (the model's default positions)
    removed: list[int]  # CoT tokens removed per row
    capped: list[bool]  # s + o reached the row's CoT length: its whole CoT is gone (official capping)
    lengths: list[int]  # real tokens per row after removal

    @property
    def all_cot_removed(self) -> bool:
        """Every row lost its whole CoT (the official `all_cot_removed_in_batch`, for removal_side=left)."""
        return all(self.capped)


def _ints(values: torch.Tensor | Sequence[int]) -> list[int]:
    return [int(v) for v in (values.tolist() if isinstance(values, torch.Tensor) else values)]


def remove_cot_tokens(input_ids: torch.Tensor, labels: torch.Tensor, spans: CoTSpans, scheduled_to_remove: float,
                      offsets: torch.Tensor | Sequence[int], side: str = "left", keep_position: bool = False,
                      pad_id: int = 0) -> RemovedBatch:
    """Remove s + o CoT tokens per row (module docstring); `scheduled_to_remove` may be float('inf')."""
    if side not in REMOVAL_SIDES:
        raise MentaleseError(f"removal_side must be one of {', '.join(REMOVAL_SIDES)}, got {side!r}")
    if scheduled_to_remove < 0:
        raise MentaleseError(f"scheduled_to_remove must be >= 0, got {scheduled_to_remove}")
    offsets = _ints(offsets)
    batch = input_ids.shape[0]
    if not len(offsets) == len(spans.start) == len(spans.end) == len(spans.seq_end) == batch:
        raise MentaleseError(f"offsets and spans need one entry per row ({batch} rows)")
    positions = None
    if keep_position:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0).repeat(batch, 1)
    rows_ids, rows_labels, removed, capped = [], [], [], []
    for b in range(batch):
        start, end, seq_end = spans.start[b], spans.end[b], spans.seq_end[b]
        if not 1 <= start <= end < seq_end <= input_ids.shape[1]:
            raise MentaleseError(f"row {b}: bad CoT span [{start}, {end}) in a row of {seq_end} tokens")
        want = scheduled_to_remove + offsets[b]  # may be inf
        if side == "left":
            cut_from, cut_to = start, int(min(start + want, end))
        else:
            cut_from, cut_to = int(max(end - want, start)), end
        if positions is not None:
            positions[b, cut_from - 1:] += cut_to - cut_from
        rows_ids.append(torch.cat((input_ids[b, :cut_from], input_ids[b, cut_to:seq_end])))
        rows_labels.append(torch.cat((labels[b, :cut_from], labels[b, cut_to:seq_end])))
        removed.append(cut_to - cut_from)
        capped.append(want >= end - start)
    lengths = [len(r) for r in rows_ids]
    width = max(lengths)
    new_ids = input_ids.new_full((batch, width), pad_id)
    new_labels = labels.new_full((batch, width), IGNORE_INDEX)
    for b, (ids, lab) in enumerate(zip(rows_ids, rows_labels)):
        new_ids[b, : len(ids)] = ids
        new_labels[b, : len(lab)] = lab
    if positions is not None:
        positions = positions[:, :width]
    return RemovedBatch(new_ids, new_labels, positions, removed, capped, lengths)


def nth_eos_positions(input_ids: torch.Tensor, eos_id: int, skip: int = 0) -> list[int]:
    """Per row the position of the (skip+1)-th eos (official `get_sep_position`)."""
    out = []
    for b, row in enumerate(input_ids):
        where = row.eq(eos_id).nonzero().flatten().tolist()
        if len(where) <= skip:
            raise MentaleseError(f"row {b} has {len(where)} eos tokens; the official layout needs 3")
        out.append(where[skip])
    return out


def official_cot_spans(input_ids: torch.Tensor, eos_id: int) -> CoTSpans:
    """The spans of the official layout: CoT = (1st eos, 2nd eos), the row ends after the 3rd eos."""
    first, second, third = (nth_eos_positions(input_ids, eos_id, skip) for skip in range(3))
    return CoTSpans(start=[f + 1 for f in first], end=second, seq_end=[t + 1 for t in third])


def remove_cot_official(input_ids: torch.Tensor, labels: torch.Tensor, eos_id: int, scheduled_to_remove: float,
                        offsets: torch.Tensor | Sequence[int], side: str = "left", keep_position: bool = False
                        ) -> RemovedBatch:
    """`remove_cot_tokens` on a batch in the official layout, re-padded with eos as the official code pads."""
    return remove_cot_tokens(input_ids, labels, official_cot_spans(input_ids, eos_id), scheduled_to_remove,
                             offsets, side=side, keep_position=keep_position, pad_id=eos_id)
