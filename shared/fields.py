"""Declarative message fields: one description drives parsing, validation and JSON Schema.

Both the backend (Python 3.11) and the Krita plugin (Krita's embedded Python, 3.10+) import this, so
it uses the standard library only and nothing newer than Python 3.10.
"""
from __future__ import annotations

import dataclasses
import enum
import math
import re
import sys
import typing
from typing import Any, Dict, List, Optional, Type, TypeVar

T = TypeVar("T")


class ProtocolError(ValueError):
    """A message broke the protocol. ``field`` names the offending field in dotted form.

    ``status`` is the HTTP status the server answers with: 400 for a body that breaks the schema;
    subclasses carry their own (the server maps nothing by type)."""

    status = 400

    def __init__(self, code: str, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def to_json(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return {"error": body}


class Unprocessable(ProtocolError):
    """The body fits the schema but cannot be used (a PNG that does not decode, sizes that disagree,
    more pixels than the model takes): what JSON Schema cannot say. Answered 422."""

    status = 422


# "Not blank": some character that neither Python (str.isspace, which counts U+001C..U+001F and U+0085)
# nor a JSON Schema validator (ECMA-262 \s, which counts U+FEFF) takes for white space. Spelled out, the
# one pattern means the same to the server's check and to the published schema.
NOT_BLANK = "[^\\t\\n\\v\\f\\r \\x1c-\\x1f\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff]"


def spec(
    default: Any = dataclasses.MISSING,
    *,
    doc: str,
    minimum: Optional[float] = None,
    maximum: Optional[float] = None,
    exclusive_minimum: Optional[float] = None,
    min_length: Optional[int] = None,
    max_length: Optional[int] = None,
    min_items: Optional[int] = None,
    max_items: Optional[int] = None,
    pattern: Optional[str] = None,
    nonblank: bool = False,
    multiple_of: Optional[int] = None,
    allow_inf: bool = False,
    const: bool = False,
    default_factory: Any = dataclasses.MISSING,
    write_only: bool = False,
) -> Any:
    """A dataclass field with the validation rules and documentation of one message field.

    ``allow_inf``: a number field that also takes the string "inf" (JSON has no infinity).
    ``const``: the field must be present and equal to its default (a discriminator such as ``kind``);
    the default only saves the sender from spelling it out in code."""
    meta = {
        "doc": doc,
        "minimum": minimum,
        "maximum": maximum,
        "exclusive_minimum": exclusive_minimum,
        "min_length": min_length,
        "max_length": max_length,
        "min_items": min_items,
        "max_items": max_items,
        # JSON Schema patterns are unanchored searches: one character outside NOT_BLANK's set.
        "pattern": NOT_BLANK if nonblank else pattern,
        "nonblank": nonblank,
        "multiple_of": multiple_of,
        "allow_inf": allow_inf,
        "const": const,
        "write_only": write_only,
    }
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _hints(cls: type) -> Dict[str, Any]:
    module = sys.modules[cls.__module__]
    return typing.get_type_hints(cls, vars(module))


def _unwrap_optional(tp: Any) -> "tuple[Any, bool]":
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    if tp in names:
        return names[tp]
    if dataclasses.is_dataclass(tp):
        return "an object"
    if typing.get_origin(tp) in (dict, Dict):
        return "an object"
    if typing.get_origin(tp) in (list, List):
        return "a list"
    return str(tp)


def _check_value(value: Any, tp: Any, meta: Dict[str, Any], path: str) -> Any:
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ProtocolError("invalid_field", "'%s' must be %s, not null" % (path, _type_name(tp)), path)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ProtocolError(
                "invalid_field", "'%s' must be %s; got %r" % (path, _type_name(tp), value), path
            ) from None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ProtocolError("invalid_field", "'%s' must be an object" % path, path)
        return _parse_object(tp, value, path + ".")
    if tp is bool:
        if not isinstance(value, bool):
            raise ProtocolError("invalid_field", "'%s' must be true or false" % path, path)
        return value
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON (and JSON Schema) make no difference between 25 and 25.0
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError("invalid_field", "'%s' must be an integer" % path, path)
        _check_range(value, meta, path)
        return value
    if tp is float:
        if meta.get("allow_inf") and value == "inf":
            return math.inf
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProtocolError(
                "invalid_field", "'%s' must be a number%s" % (path, ' or "inf"' if meta.get("allow_inf") else ""), path
            )
        if value != value or value in (float("inf"), float("-inf")):
            raise ProtocolError("invalid_field", "'%s' must be a finite number" % path, path)
        _check_range(value, meta, path)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ProtocolError("invalid_field", "'%s' must be a string" % path, path)
        _check_length(value, meta, path)
        if meta.get("nonblank") and not re.search(NOT_BLANK, value):
            raise ProtocolError("invalid_field", "'%s' must not be empty" % path, path)
        if meta.get("pattern") and not meta.get("nonblank") and not re.search(meta["pattern"], value):
            raise ProtocolError("invalid_field", "'%s' has an invalid format" % path, path)
        return value
    if typing.get_origin(tp) in (dict, Dict):
        if not isinstance(value, dict):
            raise ProtocolError("invalid_field", "'%s' must be an object" % path, path)
        _, value_type = typing.get_args(tp)
        return {str(k): _check_value(v, value_type, {}, "%s.%s" % (path, k)) for k, v in value.items()}
    if typing.get_origin(tp) in (list, List):
        if not isinstance(value, list):
            raise ProtocolError("invalid_field", "'%s' must be a list" % path, path)
        if meta.get("min_items") is not None and len(value) < meta["min_items"]:
            raise ProtocolError(
                "invalid_field", "'%s' has %d items, at least %d" % (path, len(value), meta["min_items"]), path
            )
        if meta.get("max_items") is not None and len(value) > meta["max_items"]:
            raise ProtocolError(
                "invalid_field", "'%s' has %d items, at most %d" % (path, len(value), meta["max_items"]), path
            )
        (item_type,) = typing.get_args(tp)
        return [_check_value(v, item_type, {}, "%s[%d]" % (path, i)) for i, v in enumerate(value)]
    if tp is Any:
        return value
    raise TypeError("unsupported field type %r" % (tp,))


def _check_range(value: float, meta: Dict[str, Any], path: str) -> None:
    lo, hi, xlo = meta.get("minimum"), meta.get("maximum"), meta.get("exclusive_minimum")
    if lo is not None and value < lo:
        raise ProtocolError("invalid_field", "'%s' must be at least %s; got %s" % (path, lo, value), path)
    if xlo is not None and value <= xlo:
        raise ProtocolError("invalid_field", "'%s' must be greater than %s; got %s" % (path, xlo, value), path)
    if hi is not None and value > hi:
        raise ProtocolError("invalid_field", "'%s' must be at most %s; got %s" % (path, hi, value), path)
    step = meta.get("multiple_of")
    if step and value % step:
        raise ProtocolError(
            "invalid_field", "'%s' must be a multiple of %d; got %s" % (path, step, value), path
        )


def _check_length(value: str, meta: Dict[str, Any], path: str) -> None:
    lo, hi = meta.get("min_length"), meta.get("max_length")
    if lo is not None and len(value) < lo:
        raise ProtocolError("invalid_field", "'%s' must have at least %d characters" % (path, lo), path)
    if hi is not None and len(value) > hi:
        raise ProtocolError(
            "invalid_field", "'%s' is too long: %d characters, at most %d" % (path, len(value), hi), path
        )


def _parse_object(cls: Type[T], data: Dict[str, Any], prefix: str = "") -> T:
    hints = _hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]  # T is a dataclass
    renamed: Dict[str, str] = getattr(cls, "RENAMED", {})
    for key in data:
        if key in renamed:
            raise ProtocolError(
                "renamed_field",
                "'%s%s' is gone: use '%s%s' (%s)" % (prefix, key, prefix, renamed[key], known[renamed[key]].metadata["doc"]),
                prefix + key,
            )
        if key not in known:
            raise ProtocolError("unknown_field", "unknown field '%s%s'" % (prefix, key), prefix + key)
    values = {}
    for name, f in known.items():
        path = prefix + name
        if name not in data:
            if f.metadata.get("const"):
                raise ProtocolError("missing_field", "'%s' is required: %r" % (path, to_json(f.default)), path)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError("missing_field", "'%s' is required" % path, path)
            continue
        values[name] = _check_value(data[name], hints[name], dict(f.metadata), path)
        if f.metadata.get("const") and values[name] != f.default:
            raise ProtocolError(
                "invalid_field", "'%s' must be %r; got %r" % (path, to_json(f.default), data[name]), path
            )
    obj = cls(**values)
    check = getattr(obj, "check", None)
    if check is not None:
        check(prefix)
    return obj


def parse(cls: Type[T], data: Any) -> T:
    """Build ``cls`` from decoded JSON, raising ProtocolError that names the first bad field."""
    if not isinstance(data, dict):
        raise ProtocolError("invalid_body", "the body must be a JSON object")
    return _parse_object(cls, data)


def to_json(obj: Any) -> Any:
    """The JSON form of a message: enums by value, optional fields left out when None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value is None:
                continue
            out[f.name] = to_json(value)
        return out
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, float) and math.isinf(obj):
        return "inf" if obj > 0 else "-inf"
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    return obj


def json_schema(cls: type, refs: Dict[str, Any]) -> Dict[str, Any]:
    """JSON Schema of a message class; nested message classes are added to ``refs`` by name."""
    hints = _hints(cls)
    props: Dict[str, Any] = {}
    required: List[str] = []
    for f in dataclasses.fields(cls):
        meta = dict(f.metadata)
        schema = _type_schema(hints[f.name], refs)
        if meta.get("doc"):
            schema["description"] = meta["doc"]
        for key, name in (
            ("minimum", "minimum"),
            ("maximum", "maximum"),
            ("exclusive_minimum", "exclusiveMinimum"),
            ("min_length", "minLength"),
            ("max_length", "maxLength"),
            ("min_items", "minItems"),
            ("max_items", "maxItems"),
            ("pattern", "pattern"),
            ("multiple_of", "multipleOf"),
        ):
            if meta.get(key) is not None:
                schema[name] = meta[key]
        if meta.get("const"):
            schema = {"const": to_json(f.default), "description": schema.get("description", "")}
        elif meta.get("allow_inf"):
            number = {k: v for k, v in schema.items() if k != "description"}
            schema = {"anyOf": [number, {"const": "inf"}], "description": schema.get("description", "")}
            if f.default is not dataclasses.MISSING:
                schema["default"] = to_json(f.default)
        elif f.default is not dataclasses.MISSING and f.default is not None:
            schema["default"] = to_json(f.default)
        props[f.name] = schema
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if no_default or meta.get("const"):
            required.append(f.name)
    out: Dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    if cls.__doc__:
        out["description"] = " ".join(cls.__doc__.split())
    return out


def _type_schema(tp: Any, refs: Dict[str, Any]) -> Dict[str, Any]:
    tp, optional = _unwrap_optional(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        schema: Dict[str, Any] = {"type": "string", "enum": [m.value for m in tp]}
    elif isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if tp.__name__ not in refs:
            refs[tp.__name__] = {}  # placeholder first: guards against recursion
            refs[tp.__name__] = json_schema(tp, refs)
        ref = {"$ref": "#/components/schemas/" + tp.__name__}
        return {"anyOf": [ref, {"type": "null"}]} if optional else ref
    elif tp is bool:
        schema = {"type": "boolean"}
    elif tp is int:
        schema = {"type": "integer"}
    elif tp is float:
        schema = {"type": "number"}
    elif tp is str:
        schema = {"type": "string"}
    elif typing.get_origin(tp) in (dict, Dict):
        _, value_type = typing.get_args(tp)
        schema = {"type": "object", "additionalProperties": _type_schema(value_type, refs)}
    elif typing.get_origin(tp) in (list, List):
        (item_type,) = typing.get_args(tp)
        schema = {"type": "array", "items": _type_schema(item_type, refs)}
    elif tp is Any:
        schema = {}
    else:
        raise TypeError("unsupported field type %r" % (tp,))
    if optional and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    return schema
