"""The members of the `math` stand-in filters import: math's functions and constants.

Only names, no module object: a real module would lead to everything it imports.
The few functions that can run for minutes inside one C call on large integers
(factorial, comb, perm, prod) get their arguments capped.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from types import MappingProxyType

MAX_INTEGER_ARGUMENT = 10_000
MAX_PROD_ITEMS = 100_000
MAX_PROD_BITS = 100_000


def _capped(value: object, what: str) -> None:
    if isinstance(value, int) and value > MAX_INTEGER_ARGUMENT:
        raise ValueError(f"math.{what}: argument larger than {MAX_INTEGER_ARGUMENT} "
                         "is not allowed in filters")


def factorial(n: int) -> int:
    _capped(n, "factorial")
    return math.factorial(n)


def comb(n: int, k: int) -> int:
    _capped(n, "comb")
    return math.comb(n, k)


def perm(n: int, k: int | None = None) -> int:
    _capped(n, "perm")
    return math.perm(n, k)


def prod(iterable: Iterable[object], *, start: object = 1) -> object:
    items = list(iterable)
    if len(items) > MAX_PROD_ITEMS:
        raise ValueError(f"math.prod: more than {MAX_PROD_ITEMS} items is not "
                         "allowed in filters")
    if sum(x.bit_length() for x in items if isinstance(x, int)) > MAX_PROD_BITS:
        raise ValueError("math.prod: the product of these integers would be too large "
                         "for a filter")
    return math.prod(items, start=start)


_CAPPED: dict[str, Callable[..., object]] = {
    "factorial": factorial, "comb": comb, "perm": perm, "prod": prod,
}


def _members() -> MappingProxyType[str, object]:
    members: dict[str, object] = {}
    for name in dir(math):
        if name.startswith("_"):
            continue
        value = getattr(math, name)
        if isinstance(value, float) or callable(value):
            members[name] = _CAPPED.get(name, value)
    return MappingProxyType(members)


MEMBERS = _members()
