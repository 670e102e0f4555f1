"""Why a filter was refused, in words its author can act on."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a filter's source; line and column are 1-based."""

    reason: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.reason
        where = f"line {self.line}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.reason}"


class FilterRejected(Exception):
    """A filter that cannot be accepted, with the first problem's location.

    `problems` holds every problem found, so an author can fix them all at once.
    """

    def __init__(
        self,
        reason: str,
        line: int | None = None,
        column: int | None = None,
        problems: tuple[Problem, ...] = (),
    ) -> None:
        super().__init__(reason, line, column, problems)
        self.reason = reason
        self.line = line
        self.column = column
        self.problems = problems or (Problem(reason, line, column),)

    @classmethod
    def from_problems(cls, problems: list[Problem]) -> FilterRejected:
        first = problems[0]
        return cls(first.reason, first.line, first.column, tuple(problems))

    def __str__(self) -> str:
        text = str(self.problems[0])
        if len(self.problems) > 1:
            text += f" (and {len(self.problems) - 1} more problem(s))"
        return text


class QueryRefused(Exception):
    """The service would not answer a filter's query (bad parameters, limits used up); the
    message reaches the filter as the text of a ValueError."""
