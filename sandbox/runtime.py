"""The namespace a filter runs in: safe builtins, module stand-ins and the guards
RestrictedPython's bytecode calls for every attribute, item, iteration and write.

Each filter gets its own globals and builtins; the stand-ins and alerts it shares
with other filters are immutable.
"""
from __future__ import annotations

import builtins
import operator
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence

from . import helpers, safe_math
from .capabilities import (
    ATTRIBUTES_BY_TYPE,
    BUILTIN_NAMES,
    EXCEPTION_ATTRIBUTES,
    EXCEPTION_NAMES,
    IMPORTABLE,
    MAX_POWER_BITS,
    MAX_RANGE_LENGTH,
)


class ModuleStandIn:
    """A read-only bag of functions and constants posing as an importable module."""

    __slots__ = ("_name", "_members")

    def __init__(self, name: str, members: dict[str, object]) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_members", MappingProxyType(dict(members)))

    def __getattr__(self, attr: str) -> object:  # also serves `from x import y`
        try:
            return self._members[attr]
        except KeyError:
            raise AttributeError(f"module {self._name!r} has no member {attr!r}") from None

    def __setattr__(self, attr: str, value: object) -> None:
        raise TypeError(f"module {self._name!r} is read-only")

    def __delattr__(self, attr: str) -> None:
        raise TypeError(f"module {self._name!r} is read-only")

    def __repr__(self) -> str:
        return f"<module {self._name!r}>"


STAND_INS = MappingProxyType({
    "math": ModuleStandIn("math", dict(safe_math.MEMBERS)),
    "helpers": ModuleStandIn("helpers", {name: getattr(helpers, name) for name in helpers.__all__}),
})
assert tuple(STAND_INS) == IMPORTABLE


def guarded_import(name: str, globals: object = None, locals: object = None,
                   fromlist: object = (), level: int = 0) -> ModuleStandIn:
    stand_in = STAND_INS.get(name) if level == 0 else None
    if stand_in is None:
        raise ImportError(f"cannot import {name!r}: filters may import only "
                          f"{' and '.join(IMPORTABLE)}")
    return stand_in


def guarded_getattr(obj: object, name: str, *default: object) -> object:
    kind = type(obj)
    if name.startswith("_"):
        raise AttributeError(f"attribute {name!r} is not available to filters")
    if kind is ModuleStandIn:
        return getattr(obj, name, *default)
    allowed = ATTRIBUTES_BY_TYPE.get(kind)
    if allowed is None and isinstance(obj, BaseException):
        allowed = EXCEPTION_ATTRIBUTES
    if allowed is not None and name in allowed:
        return getattr(obj, name)
    raise AttributeError(f"{kind.__name__!r} attribute {name!r} is not available to filters")


_SUBSCRIPTABLE = frozenset({MappingProxyType, dict, list, tuple, str, bytes, range})
_WRITABLE = frozenset({dict, list, set})


def guarded_getitem(obj: object, key: object) -> object:
    if type(obj) in _SUBSCRIPTABLE:
        return obj[key]  # type: ignore[index]
    raise TypeError(f"{type(obj).__name__!r} objects cannot be indexed in filters")


def guarded_write(obj: object) -> object:
    """Filters may change only the dicts, lists and sets they built themselves
    (everything shared with them is frozen, so that is all they can reach)."""
    if type(obj) in _WRITABLE:
        return obj
    raise TypeError(f"{type(obj).__name__!r} objects are read-only in filters; alerts and "
                    "helper results cannot be changed (copy them with dict() or list())")


def guarded_pow(base: Any, exponent: Any, modulus: Any = None) -> Any:
    """`**` and pow(), refusing integer results too large to compute in one call."""
    integers = type(base) in (int, bool) and type(exponent) in (int, bool)
    if modulus is not None:
        if integers and max(exponent.bit_length(), int(modulus).bit_length()) > 4096:
            raise OverflowError("modular powers of numbers over 4096 bits are not allowed "
                                "in filters")
        return pow(base, exponent, modulus)
    if integers and exponent > 0 and base.bit_length() * exponent > MAX_POWER_BITS:
        raise OverflowError(f"integer power too large for a filter (over {MAX_POWER_BITS} "
                            "bits)")
    return pow(base, exponent)


def guarded_range(*args: int) -> range:
    result = range(*args)
    if len(result) > MAX_RANGE_LENGTH:
        raise ValueError(f"range of more than {MAX_RANGE_LENGTH} numbers is not allowed in "
                         "filters")
    return result


_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": guarded_pow,
    "<<=": operator.ilshift, ">>=": operator.irshift, "&=": operator.iand,
    "|=": operator.ior, "^=": operator.ixor, "@=": operator.imatmul,
}


def guarded_inplace(op: str, target: Any, value: Any) -> Any:
    return _INPLACE[op](target, value)


def guarded_apply(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return function(*args, **kwargs)


def _safe_builtins() -> dict[str, object]:
    table = {name: getattr(builtins, name) for name in sorted(BUILTIN_NAMES | EXCEPTION_NAMES)}
    table.update(range=guarded_range, pow=guarded_pow, __import__=guarded_import)
    return table


_BUILTINS = _safe_builtins()

# Files whose frames the soft per-call timer may interrupt (with filters' own code).
INTERRUPTIBLE_FILES = frozenset({__file__, helpers.__file__, safe_math.__file__})


def filter_globals(name: str) -> dict[str, object]:
    """Fresh globals for one filter module; nothing in them is shared mutably."""
    return {
        "__builtins__": dict(_BUILTINS),
        "__name__": name,
        "_getattr_": guarded_getattr,
        "_getitem_": guarded_getitem,
        "_getiter_": iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": guarded_write,
        "_inplacevar_": guarded_inplace,
        "_apply_": guarded_apply,
        "_pow_": guarded_pow,
    }
