"""How many CoT tokens are scheduled for removal at each step, and when the optimizer is reset.

Official loop (src/train.py): a counter of batches; every `steps_per_removed_token` batches one more
token is scheduled (`steps_per_removed_token = int(round(steps_per_epoch / remove_per_epoch))`; when that
rounds to 0 the count grows by one at every batch, the first one included). Once the count reaches
`remove_all_when_remove_beyond` it becomes inf: the whole CoT goes. So, for a 0-based step k:

    s(k) = start + k // steps_per_removed_token        (steps_per_removed_token >= 1)
    s(k) = start + k + 1                              (steps_per_removed_token == 0)
    s(k) = inf                                        once s(k) >= remove_all_when_remove_beyond

Here k counts optimizer steps (Trainer's global_step); the official code counts batches, which is
the same thing without gradient accumulation (docs/icot.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mentalese.errors import MentaleseError


def steps_per_removed_token(steps_per_epoch: int, remove_per_epoch: float) -> int:
    """Official: int(round(steps_per_epoch / remove_per_epoch)) (Python's round: halves to even)."""
    if steps_per_epoch < 1:
        raise MentaleseError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    if not remove_per_epoch > 0:
        raise MentaleseError(f"remove_per_epoch must be > 0, got {remove_per_epoch}")
    return int(round(steps_per_epoch / remove_per_epoch))


@dataclass(frozen=True)
class RemovalSchedule:
    steps_per_removed_token: int  # one more token every this many steps (0: one more at every step)
    remove_start_from: int = 0
    remove_all_when_remove_beyond: float = math.inf

    def __post_init__(self) -> None:
        if self.steps_per_removed_token < 0:
            raise MentaleseError(f"steps_per_removed_token must be >= 0, got {self.steps_per_removed_token}")
        if self.remove_start_from < 0:
            raise MentaleseError(f"remove_start_from must be >= 0, got {self.remove_start_from}")

    def _capped(self, count: float) -> float:
        return math.inf if count >= self.remove_all_when_remove_beyond else count

    def scheduled(self, step: int) -> float:
        """Tokens scheduled for removal at 0-based optimizer step `step` (an int, or inf = all)."""
        if step < 0:
            raise MentaleseError(f"step must be >= 0, got {step}")
        if self.steps_per_removed_token == 0:
            return self._capped(self.remove_start_from + step + 1)
        return self._capped(self.remove_start_from + step // self.steps_per_removed_token)

    def before(self, step: int) -> float:
        """The count in force before `step` (for step 0: the starting count)."""
        return self.scheduled(step - 1) if step > 0 else self._capped(self.remove_start_from)

    def changes_at(self, step: int) -> bool:
        """The scheduled count grows at `step` (the official code resets the optimizer then)."""
        return self.scheduled(step) > self.before(step)

    def first_step_removing(self, tokens: int) -> int | None:
        """The first step whose scheduled count is >= `tokens` (all of a CoT that long), None if never."""
        if self._capped(self.remove_start_from) >= tokens:
            return 0
        if math.isfinite(self.remove_all_when_remove_beyond):
            tokens = min(tokens, int(math.ceil(self.remove_all_when_remove_beyond)))
        need = tokens - self.remove_start_from
        if self.steps_per_removed_token == 0:
            return max(need - 1, 0)
        return need * self.steps_per_removed_token


def should_reset_optimizer(schedule: RemovalSchedule, step: int, previous_batch_all_removed: bool,
                           enabled: bool = True) -> bool:
    """Official: reset when the scheduled count grows, unless the previous batch had lost its whole CoT
    already (then the removal changes nothing for such batches)."""
    return enabled and schedule.changes_at(step) and not previous_batch_all_removed
