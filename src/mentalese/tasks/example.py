"""The one record every loader produces and every method consumes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mentalese.errors import MentaleseError


@dataclass
class Example:
    """A reasoning problem.

    question:  the problem text, without any prompt template.
    answer:    the reference final answer as a string ("18", "\\frac{1}{2}", "Sally is a sterpus.").
    cot_steps: the reasoning steps, one string per step (may be empty when a dataset has none).
    id:        stable identifier within its benchmark split.
    meta:      anything dataset-specific (level, subject, original fields).
    """

    question: str
    answer: str
    cot_steps: list[str] = field(default_factory=list)
    id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.question, str) or not self.question.strip():
            raise MentaleseError(f"example {self.id!r}: empty or missing question")
        if self.answer is None or (isinstance(self.answer, str) and not self.answer.strip()):
            raise MentaleseError(f"example {self.id!r}: empty or missing answer")
        self.answer = str(self.answer).strip()
        if not all(isinstance(s, str) for s in self.cot_steps):
            raise MentaleseError(f"example {self.id!r}: cot_steps must be a list of strings")

    def cot_text(self, sep: str = " ") -> str:
        return sep.join(self.cot_steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
