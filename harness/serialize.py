"""One serializer for the harness's typed files: a dataclass written as its fields in order, read back by its type hints.

Every typed result (summary.json, analysis.json, claims.json, a cell's manifest, a baseline) is a dataclass with
this mixin, so there is one rule for what a file holds and how it is read:
- written: the fields in declaration order (``lead`` names fields written first), nested typed values as their own
  mappings; a field named in ``omit_none`` (or every field, with ``omit_none = True``) is left out while it is None,
  so a file written before the field existed reads back the same;
  properties named in ``derived`` follow the fields (for readers of the file, not read back);
- read: nested values rebuilt from the field's type (``Optional[X]``, ``list[X]``, ``dict[str, X]`` of a typed
  dataclass); a missing field takes its default; a field this version does not know means a newer writer and is
  refused with one line, never dropped or misread.
Written here rather than with pydantic: the files' exact bytes (field order, absent fields) are what the golden
reports pin, and a 100-line mixin keeps them without a new runtime dependency.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Optional, TypeVar, Union

from harness.errors import HarnessError

T = TypeVar("T", bound="Serializable")
Decode = Callable[[Any], Any]

UPGRADE = (
    "upgrade the harness (pip install -U small-vs-large), or rebuild the report with this one: harness report RUN_DIR"
)


class ResultFormatError(HarnessError):
    """A results file that this version of the harness cannot read."""


class MissingFieldsError(ResultFormatError):
    """A file without fields every writer of it wrote: damaged, or not the harness's."""


def unknown_fields_error(where: str, unknown: list[str]) -> ResultFormatError:
    """The one error for a field this version does not know: the file was written by a newer version."""
    return ResultFormatError(
        f"{where} has fields this version of the harness does not know ({', '.join(unknown)}): written by a newer version",
        UPGRADE,
    )


class Serializable:
    """Mixin for a dataclass that is written to and read from JSON (see the module's rules)."""

    where: ClassVar[str] = "a results file entry"  # how an error names what was being read
    lead: ClassVar[tuple[str, ...]] = ()  # fields written first (a file's format version)
    omit_none: ClassVar[Union[bool, tuple[str, ...]]] = ()  # True: every field left out while None
    derived: ClassVar[tuple[str, ...]] = ()  # properties written after the fields for readers of the file; not read

    def to_dict(self) -> dict[str, Any]:
        omit = self.omit_none
        out = {}
        for name in _order(type(self)):
            value = getattr(self, name)
            if value is None and (omit is True or (omit and name in omit)):
                continue
            out[name] = encode(value)
        for name in self.derived:
            out[name] = encode(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls: type[T], d: Mapping[str, Any], where: Optional[str] = None) -> T:
        decoders = _decoders(cls)
        unknown = [k for k in d if k not in decoders and k not in cls.derived]
        if unknown:
            raise unknown_fields_error(where or cls.where, sorted(unknown))
        values = {k: _decoded(decoders[k], v) for k, v in d.items() if k in decoders}
        try:
            return cls(**values)
        except TypeError as exc:  # a required field missing
            raise MissingFieldsError(
                f"{where or cls.where} is not a file this harness wrote ({exc})",
                "move the damaged file aside and run the same command again to rebuild it",
            ) from exc


def encode(value: Any) -> Any:
    """A typed value as JSON-ready data: typed records by their own rules, containers element by element."""
    if isinstance(value, Serializable):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


_ORDERS: dict[type, tuple[str, ...]] = {}  # per class, computed once (a large store reads thousands of records)
_DECODERS: dict[type, dict[str, Optional[Decode]]] = {}


def _order(cls: type) -> tuple[str, ...]:
    if cls not in _ORDERS:
        lead: tuple[str, ...] = getattr(cls, "lead", ())
        _ORDERS[cls] = lead + tuple(f.name for f in dataclasses.fields(cls) if f.name not in lead)
    return _ORDERS[cls]


def _decoders(cls: type) -> dict[str, Optional[Decode]]:
    """Per field, how its JSON value becomes the typed value (None: kept as read)."""
    if cls not in _DECODERS:
        hints = typing.get_type_hints(cls)
        _DECODERS[cls] = {f.name: _decoder(hints[f.name]) for f in dataclasses.fields(cls)}
    return _DECODERS[cls]


def _decoded(dec: Optional[Decode], value: Any) -> Any:
    return value if value is None or dec is None else dec(value)


def _decoder(tp: Any) -> Optional[Decode]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _optional(_decoder(inner[0])) if len(inner) == 1 else None
    if origin is dict:
        return _mapping(_decoder(args[1]))
    if origin is list:
        return _sequence(_decoder(args[0]))
    if isinstance(tp, type) and issubclass(tp, Serializable):
        return tp.from_dict
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return lambda v: tp(**v)
    return None


def _optional(dec: Optional[Decode]) -> Optional[Decode]:
    return None if dec is None else (lambda v: None if v is None else dec(v))


def _mapping(dec: Optional[Decode]) -> Optional[Decode]:
    return None if dec is None else (lambda v: {k: dec(x) for k, x in v.items()})


def _sequence(dec: Optional[Decode]) -> Optional[Decode]:
    return None if dec is None else (lambda v: [dec(x) for x in v])
