"""Everything a filter may touch, in one table.

The compiler uses it to refuse other names and attributes with a clear message;
the runtime guards enforce it again on the actual objects, so a name that slips
past the compiler still reaches nothing.
"""
from __future__ import annotations

from types import MappingProxyType

# Modules a filter may import; both are sandbox stand-ins, never real modules.
IMPORTABLE = ("math", "helpers")

# Builtin functions and types filters may call (range and pow are capped versions).
BUILTIN_NAMES = frozenset({
    "abs", "all", "any", "bool", "bytes", "chr", "dict", "divmod", "enumerate",
    "filter", "float", "frozenset", "int", "isinstance", "iter", "len", "list",
    "map", "max", "min", "next", "ord", "pow", "range", "repr", "reversed",
    "round", "set", "sorted", "str", "sum", "tuple", "zip",
})

# Exceptions filters may raise and catch. BaseException is deliberately absent:
# the sandbox's own time-limit signal derives from it and must not be caught.
EXCEPTION_NAMES = frozenset({
    "ArithmeticError", "AssertionError", "AttributeError", "Exception",
    "IndexError", "KeyError", "LookupError", "NameError", "NotImplementedError",
    "OverflowError", "RecursionError", "RuntimeError", "StopIteration",
    "TypeError", "ValueError", "ZeroDivisionError",
})

_STR_METHODS = frozenset({
    "capitalize", "casefold", "center", "count", "endswith", "find", "index",
    "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "islower",
    "isnumeric", "isspace", "istitle", "isupper", "join", "ljust", "lower",
    "lstrip", "partition", "removeprefix", "removesuffix", "replace", "rfind",
    "rindex", "rjust", "rpartition", "rsplit", "rstrip", "split", "splitlines",
    "startswith", "strip", "swapcase", "title", "upper", "zfill",
})
_MAPPING_READ = frozenset({"get", "keys", "values", "items"})
_SET_READ = frozenset({
    "copy", "difference", "intersection", "isdisjoint", "issubset", "issuperset",
    "symmetric_difference", "union",
})
_NUMBER = frozenset({"real", "imag", "conjugate"})

# Attributes by exact type. Anything not listed (functions, types, generators,
# frames, code, modules, ...) has no attributes at all as far as a filter knows.
ATTRIBUTES_BY_TYPE: MappingProxyType[type, frozenset[str]] = MappingProxyType({
    str: _STR_METHODS,
    bytes: frozenset({"count", "endswith", "find", "hex", "index", "startswith"}),
    MappingProxyType: _MAPPING_READ,
    dict: _MAPPING_READ | {"clear", "copy", "pop", "setdefault", "update"},
    list: frozenset({"append", "clear", "copy", "count", "extend", "index", "insert",
                     "pop", "remove", "reverse", "sort"}),
    tuple: frozenset({"count", "index"}),
    set: _SET_READ | {"add", "clear", "discard", "pop", "remove", "update"},
    frozenset: _SET_READ,
    int: _NUMBER | {"bit_length"},
    bool: _NUMBER | {"bit_length"},
    float: _NUMBER | {"is_integer"},
    complex: _NUMBER,
})

# Exceptions expose only their arguments (never traceback, context or .obj).
EXCEPTION_ATTRIBUTES = frozenset({"args"})

# Why some familiar names are missing, for the compiler's messages.
MISSING_NAME_REASONS = MappingProxyType({
    "open": "filters cannot read or write files",
    "exec": "filters cannot run code built at run time",
    "eval": "filters cannot run code built at run time",
    "compile": "filters cannot run code built at run time",
    "__import__": "use 'import math' or 'import helpers'",
    "getattr": "use plain attribute access such as x.lower()",
    "setattr": "filters cannot change objects they did not create",
    "delattr": "filters cannot change objects they did not create",
    "hasattr": "use plain attribute access",
    "vars": "filters cannot inspect namespaces",
    "dir": "filters cannot inspect namespaces",
    "globals": "filters cannot inspect namespaces",
    "locals": "filters cannot inspect namespaces",
    "type": "use isinstance(x, float) to check a type",
    "object": "filters cannot create classes or objects",
    "super": "filters cannot create classes or objects",
    "classmethod": "filters cannot create classes or objects",
    "staticmethod": "filters cannot create classes or objects",
    "property": "filters cannot create classes or objects",
    "hash": "not needed by filters (and it can crash the interpreter on deep data)",
    "id": "object identities are not available",
    "memoryview": "not needed by filters",
    "input": "filters have no console",
    "print": "filters have no console; return a result, or raise an exception "
             "with a message",
    "breakpoint": "filters have no console",
    "help": "filters have no console",
    "BaseException": "catch specific errors such as ValueError instead",
    "SystemExit": "a filter reports a failure by raising an exception",
    "KeyboardInterrupt": "catch specific errors such as ValueError instead",
})

# Attributes worth a specific explanation when refused.
MISSING_ATTRIBUTE_REASONS = MappingProxyType({
    "format": "str.format can reach attributes of its arguments; use an f-string "
              "or '%' formatting",
    "format_map": "str.format_map can reach attributes of its arguments; use an "
                  "f-string or '%' formatting",
    "encode": "filters work with text and numbers, not encodings",
    "decode": "filters work with text and numbers, not encodings",
    "mro": "filters cannot inspect types",
})

# Caps on builtins that would otherwise run for minutes inside one C call.
MAX_RANGE_LENGTH = 10_000_000
MAX_POWER_BITS = 1_000_000


def allowed_attribute_names(module_members: frozenset[str]) -> frozenset[str]:
    """Every attribute name some allowed object has: what the compiler accepts."""
    names = set(EXCEPTION_ATTRIBUTES) | module_members
    for members in ATTRIBUTES_BY_TYPE.values():
        names |= members
    return frozenset(names)
