"""One codec for netcut's typed values: dataclasses to plain JSON and back, driven by their type hints.

Tuples and lists become lists, dicts keep string keys, nested dataclasses become objects, `X | None` may be null.
Decoding is strict about shape (a missing field without a default is an error) and lenient about extra keys
(a newer writer's additions are ignored), so a stored result is read by the types it was written with.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")


def encode(value: Any, kind: Any = None) -> Any:
    """A typed value as plain JSON (dataclasses, tuples, lists, dicts and scalars). A dataclass is written with
    the fields of the type its container declares (`kind`), so a subclass's extra fields stay out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = kind if isinstance(kind, type) and dataclasses.is_dataclass(kind) else type(value)
        hints = _hints(cls)
        return {f.name: encode(getattr(value, f.name), hints[f.name]) for f in dataclasses.fields(cls)}
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return encode(value, options[0] if len(options) == 1 else None)
    if isinstance(value, (list, tuple)):
        inner = args[0] if origin in (list, tuple) and args and (origin is list or args[-1] is Ellipsis) else None
        return [encode(v, inner) for v in value]
    if isinstance(value, dict):
        inner = args[1] if origin is dict and args else None
        return {str(k): encode(v, inner) for k, v in value.items()}
    return value


def decode(kind: type[T], data: Any) -> T:
    """The value of type `kind` that `encode` turned into `data`."""
    return typing.cast(T, _decode(kind, data))


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(kind: Any, data: Any) -> Any:
    if kind is Any:
        return data
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"cannot decode the union {kind}")
        return _decode(options[0], data)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in data)
        return tuple(_decode(a, v) for a, v in zip(args, data))
    if origin is list:
        return [_decode(args[0], v) for v in data]
    if origin is dict:
        return {k: _decode(args[1], v) for k, v in data.items()}
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        if not isinstance(data, dict):
            raise TypeError(f"{kind.__name__} must be an object, got {type(data).__name__}")
        hints = _hints(kind)
        return kind(**{f.name: _decode(hints[f.name], data[f.name]) for f in dataclasses.fields(kind)
                       if f.init and f.name in data})
    if kind is float:
        return float(data)
    if kind is int:
        return int(data)
    return data
