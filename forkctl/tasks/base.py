"""What a task is: questions plus the way to judge responses to them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from forkctl.records import Question


@dataclass
class Scored:
    """A response as a benchmark judges it. ``answer_class``: equal ids = equivalent answers within a
    question (None = no answer); ``extra`` lands in the sample record (e.g. a detected strategy)."""

    answer: str | None
    correct: bool | None
    answer_class: int | None
    extra: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    """Questions plus the way to judge responses to them."""

    name: str = "custom"
    # The user message for a question when the user gives no --prompt-template ({problem} is replaced).
    prompt_template: str = "{problem}"

    @abstractmethod
    def load(self) -> list[Question]:
        """The questions, in a stable order."""

    @abstractmethod
    def score(self, items: list[tuple[Question, list[str]]]) -> list[list[Scored]]:
        """Judge several questions' responses at once (lets judges batch work in a process pool)."""

    def extract_answer(self, text: str) -> str | None:
        """The answer a response states, for reading records (judging is ``score``'s)."""
        return None

    def user_message(self, question: Question, template: str | None = None) -> str:
        """The user turn for a question: ``template`` (the user's ``--prompt-template``, else the task's own)
        with ``{problem}`` replaced."""
        return (template or self.prompt_template).replace("{problem}", question.problem)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}
