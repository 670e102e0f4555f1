"""WHERE: a filter's simple cuts, declared as data, so most alerts never reach its Python.

    WHERE = (("diaSource.reliability", ">=", 0.8), ("diaSource.band", "in", ("g", "r")),
             ("diaSource.ssObjectId", "is", None))

Every condition must hold (AND). A field is a top-level alert key ("diaSourceId") or
"record.column" for the single records (diaSource, diaObject, ssSource). A comparison with a
null (None or absent) field is false, as in SQL; ``is`` / ``is not`` take only None. Only the
alerts that pass are handed to ``filter(alert)``; the others are no match, at no call.

A WHERE is never code: the compiler reads it with ``ast.literal_eval`` and checks it here, and
the batch runner evaluates it, column by column over the whole batch, with the operators below,
so a cut costs a few list passes per batch instead of one restricted Python call per alert.
"""
from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

RECORDS = frozenset({"diaSource", "diaObject", "ssSource"})
SCALARS = frozenset({"diaSourceId", "observation_reason", "target_name"})
COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne,
}
MEMBERSHIP = frozenset({"in", "not in"})
IDENTITY = frozenset({"is", "is not"})
MAX_CONDITIONS = 32
MAX_SET = 64
EXAMPLE = 'WHERE = (("diaSource.reliability", ">=", 0.8), ("diaSource.ssObjectId", "is", None))'

Condition = tuple[str, str, Any]


def _scalar(value: Any) -> bool:
    return type(value) in (int, float, str, bool)


def where_problems(value: Any) -> list[str]:
    """What is wrong with a WHERE literal, in words for its author (none: accepted)."""
    if not isinstance(value, tuple | list) or not value:
        return [f"WHERE must be a non-empty tuple of (field, operator, value) conditions, e.g. {EXAMPLE}"]
    if len(value) > MAX_CONDITIONS:
        return [f"WHERE has {len(value)} conditions; at most {MAX_CONDITIONS}"]
    problems = []
    for condition in value:
        if not (isinstance(condition, tuple | list) and len(condition) == 3):
            problems.append(f"{condition!r:.80} is not a (field, operator, value) triple")
            continue
        field, op, operand = condition
        if not isinstance(field, str) or not _known_field(field):
            problems.append(f"{field!r:.80} is not a field WHERE can test: use a top-level key "
                            f"({', '.join(sorted(SCALARS))}) or record.column with a record in "
                            f"{', '.join(sorted(RECORDS))}")
        if op in COMPARISONS:
            if not _scalar(operand):
                problems.append(f"{op} needs a number, string or boolean, not {operand!r:.80}")
        elif op in MEMBERSHIP:
            if not (isinstance(operand, tuple | list) and 0 < len(operand) <= MAX_SET
                    and all(_scalar(v) for v in operand)):
                problems.append(f"{op} needs a tuple of 1 to {MAX_SET} numbers or strings")
        elif op in IDENTITY:
            if operand is not None:
                problems.append(f"{op} takes only None (compare values with == or !=)")
        else:
            problems.append(f"{op!r:.20} is not an operator WHERE knows: "
                            f"{', '.join([*COMPARISONS, *sorted(MEMBERSHIP), *sorted(IDENTITY)])}")
    return problems


def _known_field(field: str) -> bool:
    parts = field.split(".")
    return (len(parts) == 1 and parts[0] in SCALARS) or (
        len(parts) == 2 and parts[0] in RECORDS and parts[1].isidentifier())


def normalize(value: Any) -> tuple[Condition, ...]:
    """The checked literal as hashable tuples (membership sets as frozensets)."""
    return tuple((field, op, frozenset(operand) if op in MEMBERSHIP else operand)
                 for field, op, operand in value)


def top_keys(conditions: Sequence[Condition]) -> frozenset[str]:
    """The top-level alert keys a WHERE reads (which READS must include)."""
    return frozenset(field.split(".", 1)[0] for field, _, _ in conditions)


def _test(op: str, operand: Any) -> Callable[[Any], bool]:
    if op == "is":
        return lambda v: v is None
    if op == "is not":
        return lambda v: v is not None
    if op == "in":
        return lambda v: v is not None and v in operand
    if op == "not in":
        return lambda v: v is not None and v not in operand
    compare = COMPARISONS[op]

    def test(v: Any) -> bool:
        if v is None:
            return False
        try:
            return bool(compare(v, operand))
        except TypeError:  # a string field against a number: cannot hold
            return False
    return test


class BatchColumns:
    """The fields WHERE reads, each taken out of the batch's alerts once and shared by every filter."""

    def __init__(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        self.alerts = alerts
        self._columns: dict[str, list[Any]] = {}

    def column(self, field: str) -> list[Any]:
        values = self._columns.get(field)
        if values is None:
            record, _, column = field.partition(".")
            if column:
                holders = [a.get(record) for a in self.alerts]
                values = [h.get(column) if isinstance(h, Mapping) else None for h in holders]
            else:
                values = [a.get(record) for a in self.alerts]
            self._columns[field] = values
        return values

    def candidates(self, conditions: Sequence[Condition]) -> list[int]:
        """Indices of the alerts that pass every condition, in order."""
        chosen: Sequence[int] = range(len(self.alerts))
        for field, op, operand in conditions:
            values, test = self.column(field), _test(op, operand)
            chosen = [i for i in chosen if test(values[i])]
            if not chosen:
                break
        return list(chosen)
