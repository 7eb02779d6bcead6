"""Payload schemas compiled to Python source: one flat function per schema that says whether a value matches it.

:func:`edge.publish.schema.validate` checks every payload the daemon publishes (thousands a second with line
frames).  Its reference checker (``schema._compile``) walks the schema with one closure call per field and builds
the error message that names the offending field; the function generated here makes the same decision with the
checks written out inline (no call per field, no generic branches for types a field cannot have), and only says
yes or no.  ``validate`` runs it first and runs the reference checker only when it says no, to name the field, so
the verdict and the error message are those of the reference checker (``tests/edge/test_schema_checkers.py``
compares the two on every golden payload and on random mutations of them).

The subset of JSON Schema is the one ``edge.publish.schema`` uses: ``type``, ``properties``, ``required``,
``additionalProperties`` (``false``, ``true`` or a schema), ``items``, ``enum``, ``minimum``, ``maximum``,
``minLength``, ``maxLength``; numbers must be finite.

>>> check = compile_checker({"type": "object", "required": ["n"], "additionalProperties": False,
...                          "properties": {"n": {"type": "integer", "minimum": 0}}},
...                         {"object": (dict,), "integer": (int,)}, strict=True)
>>> check({"n": 3}), check({"n": -1}), check({"n": 3, "x": 1}), check({"n": True}), check({})
(True, False, False, False, False)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["compile_checker"]

_MISSING = object()
#: The kinds of Python value the reference checker treats apart (a value is of one kind at most).
_NUMBER, _STRING, _OBJECT, _ARRAY, _OTHER = "number", "string", "object", "array", "other"
_KIND_OF_TYPE = {"integer": _NUMBER, "number": _NUMBER, "string": _STRING, "object": _OBJECT, "array": _ARRAY,
                 "boolean": _OTHER, "null": _OTHER}


class _Generator:
    """Writes the body of one checker: statements that ``return False`` at the first mismatch."""

    def __init__(self, types: Mapping[str, tuple[type, ...]], strict: bool) -> None:
        self.types = types
        self.strict = strict
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self._vars = 0

    def const(self, value: Any) -> str:
        name = f"_k{len(self.consts)}"
        self.consts[name] = value
        return name

    def var(self) -> str:
        self._vars += 1
        return f"v{self._vars}"

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def node(self, schema: Mapping[str, Any], v: str, depth: int) -> None:
        """Statements checking the value in variable ``v`` against ``schema`` (the reference checker's rules).

        The common cases come first, cheaper than the general rules and deciding the same: null where the
        schema allows it (nothing else to check), a finite Python float or a Python int where a number is
        expected, a Python ``str`` where an enum of strings is expected; anything else takes the general rules.
        """
        types = schema.get("type")
        names = None if types is None else ((types,) if isinstance(types, str) else tuple(types))
        enum = schema.get("enum")
        if names is not None and "null" in names and len(names) > 1 and enum is None:
            mark = len(self.lines)
            self.emit(depth, f"if {v} is not None:")
            self.node({**schema, "type": [n for n in names if n != "null"]}, v, depth + 1)
            if len(self.lines) == mark + 1:
                del self.lines[mark:]
            return
        if names is not None and set(names) <= {"integer", "number"} and enum is None:
            self._number_only(schema, v, depth, names)
            return
        if names is not None:
            allowed = tuple(t for n in names for t in self.types[n])
            cond = f"not isinstance({v}, {self.const(allowed[0] if len(allowed) == 1 else allowed)})"
            if "boolean" not in names and issubclass(bool, allowed):  # bool is an int in Python, not a JSON integer
                cond += f" or type({v}) is bool"
            self.emit(depth, f"if {cond}: return False")
        if enum is not None:
            self.emit(depth, f"if {v} not in {self.const(tuple(enum))}: return False")
        kinds = ({_NUMBER, _STRING, _OBJECT, _ARRAY} if names is None
                 else {_KIND_OF_TYPE[n] for n in names} - {_OTHER})
        only = len(kinds) == 1 and names is not None and all(_KIND_OF_TYPE[n] != _OTHER for n in names)
        # A value equal to a member of an enum of strings is, in practice, a str: its other checks are skipped
        # by one test of its type (exactly: an instance of str is never a number, a dict or a list).
        skip_for_str = names is None and enum is not None and all(isinstance(e, str) for e in enum)
        guard: int | None = None  # where "if type(v) is not str:" stands, once emitted
        for kind, cond, body in (
            (_STRING, f"isinstance({v}, str)", self._string),  # first: the guard follows it
            (_NUMBER, f"isinstance({v}, (int, float)) and type({v}) is not bool", self._number),
            (_OBJECT, f"isinstance({v}, dict)", self._object),
            (_ARRAY, f"isinstance({v}, (list, tuple))", self._array),
        ):
            if kind not in kinds:
                continue
            if only:
                body(schema, v, depth, names)
                continue
            d = depth
            if skip_for_str and kind != _STRING:
                if guard is None:
                    guard = len(self.lines)
                    self.emit(depth, f"if type({v}) is not str:")
                d = depth + 1
            mark = len(self.lines)
            self.emit(d, f"if {cond}:")
            body(schema, v, d + 1, names)
            if len(self.lines) == mark + 1:  # nothing to check for this kind of value
                del self.lines[mark:]
        if guard is not None and len(self.lines) == guard + 1:
            del self.lines[guard:]

    def _number_only(self, schema: Mapping[str, Any], v: str, depth: int, names: tuple[str, ...]) -> None:
        """A number (or an integer): a finite Python float (an int) passes the type tests at once."""
        if "number" in names:
            self.emit(depth, f"if type({v}) is not float or {v} - {v} != 0.0:  # not a finite Python float")
            self.emit(depth + 1, f"if not isinstance({v}, (int, float)) or type({v}) is bool: return False")
            self.emit(depth + 1, f"if isinstance({v}, float) and not isfinite({v}): return False")
        else:
            self.emit(depth, f"if type({v}) is not int:")
            self.emit(depth + 1, f"if not isinstance({v}, int) or type({v}) is bool: return False")
        self._number(schema, v, depth, ("integer",))  # the bounds

    def _number(self, schema: Mapping[str, Any], v: str, depth: int, names: tuple[str, ...] | None) -> None:
        if names is None or "number" in names:
            self.emit(depth, f"if isinstance({v}, float) and not isfinite({v}): return False")
        if schema.get("minimum") is not None:
            self.emit(depth, f"if {v} < {self.const(schema['minimum'])}: return False")
        if schema.get("maximum") is not None:
            self.emit(depth, f"if {v} > {self.const(schema['maximum'])}: return False")

    def _string(self, schema: Mapping[str, Any], v: str, depth: int, names: tuple[str, ...] | None) -> None:
        if schema.get("minLength", 0):
            self.emit(depth, f"if len({v}) < {int(schema['minLength'])}: return False")
        if schema.get("maxLength") is not None:
            self.emit(depth, f"if len({v}) > {int(schema['maxLength'])}: return False")

    def _object(self, schema: Mapping[str, Any], v: str, depth: int, names: tuple[str, ...] | None) -> None:
        required = tuple(schema.get("required", ()))
        props: Mapping[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        if extra is False and not self.strict:
            extra = True  # a consumer ignores fields it does not know
        if required:
            self.emit(depth, f"if not {v}.keys() >= {self.const(frozenset(required))}: return False")
        if extra is False:
            self.emit(depth, f"if not {v}.keys() <= {self.const(frozenset(props))}: return False")
        k = self.var()
        if isinstance(extra, Mapping):
            x = self.var()
            self.emit(depth, f"for {k}, {x} in {v}.items():")
            self.emit(depth + 1, f"if {k}.__class__ is not str and not isinstance({k}, str): return False")
            if props:
                self.emit(depth + 1, f"if {k} in {self.const(frozenset(props))}: continue")
            self.node(extra, x, depth + 1)
        else:
            self.emit(depth, f"for {k} in {v}:")  # (a str's __class__ is str: isinstance's first test)
            self.emit(depth + 1, f"if {k}.__class__ is not str and not isinstance({k}, str): return False")
        for name, sub in props.items():
            x = self.var()
            if name in required:
                self.emit(depth, f"{x} = {v}[{name!r}]")
                self.node(sub, x, depth)
            else:
                mark = len(self.lines)
                self.emit(depth, f"{x} = {v}.get({name!r}, _MISSING)")
                self.emit(depth, f"if {x} is not _MISSING:")
                self.node(sub, x, depth + 1)
                if len(self.lines) == mark + 2:
                    del self.lines[mark:]

    def _array(self, schema: Mapping[str, Any], v: str, depth: int, names: tuple[str, ...] | None) -> None:
        if "items" not in schema:
            return
        x = self.var()
        mark = len(self.lines)
        self.emit(depth, f"for {x} in {v}:")
        self.node(schema["items"], x, depth + 1)
        if len(self.lines) == mark + 1:
            del self.lines[mark:]


def compile_checker(schema: Mapping[str, Any], types: Mapping[str, tuple[type, ...]], *,
                    strict: bool) -> Callable[[Any], bool]:
    """A function ``check(value) -> bool`` that says whether ``value`` matches ``schema``.

    Parameters
    ----------
    schema : mapping
        A schema of the subset above.
    types : mapping of str to tuple of type
        The Python types of each JSON type name (``edge.publish.schema``'s, so both checkers agree).
    strict : bool
        Refuse fields that an object's ``additionalProperties: false`` does not list (the producer's check); else
        ignore them (a consumer's check).
    """
    gen = _Generator(types, strict)
    gen.node(schema, "v0", 1)
    source = "\n".join(["def check(v0):", *gen.lines, "    return True"])
    namespace: dict[str, Any] = {"isinstance": isinstance, "type": type, "len": len, "isfinite": math.isfinite,
                                 "_MISSING": _MISSING, "int": int, "float": float, "str": str, "dict": dict,
                                 "list": list, "tuple": tuple, "bool": bool, **gen.consts}
    exec(compile(source, f"<checker {schema.get('$id', 'schema')}>", "exec"), namespace)  # our own source
    check: Callable[[Any], bool] = namespace["check"]
    check.__doc__ = source  # the generated code, for whoever debugs it
    return check
