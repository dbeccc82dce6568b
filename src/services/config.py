"""TOML tables read into configuration dataclasses, every key checked against its field.

The node's configuration (and each service's section of it) is a dataclass with defaults.
:func:`build` turns one TOML table into one: an unknown key, or a value of the wrong type,
is a :class:`~dicomwire.errors.ConfigError` naming the file, the table, the key and what
was expected — never a ``TypeError`` from deep inside. Types come from the dataclass's
annotations, so adding a field to a config class is all it takes to make it configurable.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from ..errors import ConfigError

if typing.TYPE_CHECKING:
    from ..ul.tls import TLSConfig

__all__ = ["build", "check_tls_files"]

_T = TypeVar("_T")


def build(kind: type[_T], table: Mapping[str, Any], *, file: str, where: str) -> _T:
    """``kind`` made from ``table``; ConfigError naming ``file``, ``where`` and the key.

    ``where`` is the table as the user wrote it (``"[storage]"``, ``"[[nodes]]"``, or
    the file name for top-level keys).
    """
    if not isinstance(table, Mapping):
        raise ConfigError(f"{file}: {where} must be a table, not {table!r}", file=file)
    assert is_dataclass(kind)
    known = {f.name: f for f in fields(kind) if f.init}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(
            f"{file}: unknown setting(s) in {where}: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})",
            file=file,
            key=unknown[0],
        )
    missing = [
        name
        for name, f in known.items()
        if f.default is MISSING and f.default_factory is MISSING and name not in table
    ]
    if missing:
        raise ConfigError(f"{file}: {where} needs {', '.join(missing)}", file=file, key=missing[0])
    try:
        hints = typing.get_type_hints(kind)
    except (NameError, TypeError):  # annotations that do not resolve: leave them unchecked
        hints = {}
    place = "" if where == file else f"{where} "  # top-level keys: the file alone
    values = {
        name: _convert(value, hints.get(name, Any), f"{file}: {place}{name}")
        for name, value in table.items()
    }
    try:
        return kind(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{file}: {where}: {exc}", file=file) from None


def _expected(annotation: Any) -> str:
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "a whole number"
    if annotation is float:
        return "a number"
    if annotation in (str, Path):
        return "text"
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(annotation))
    if origin in (list, tuple, Sequence) or annotation in (list, tuple):
        args = get_args(annotation)
        return f"a list of {_expected(args[0]) if args else 'values'}"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in annotation)
    return getattr(annotation, "__name__", str(annotation))


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """``value`` checked against ``annotation`` (and converted: Path, tuple, Enum)."""
    if annotation is Any:
        return value
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(annotation):
            return None  # set by the loader itself (a timeout of 0 means none)
        options = [a for a in get_args(annotation) if a is not type(None)]
        for option in options:
            try:
                return _convert(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(
            f"{where}: expected {' or '.join(_expected(o) for o in options)}, got {value!r}"
        )

    def wrong() -> ConfigError:
        return ConfigError(f"{where}: expected {_expected(annotation)}, got {value!r}")

    if annotation is bool:
        if not isinstance(value, bool):
            raise wrong()
        return value
    if annotation is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise wrong()
        return value
    if annotation is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise wrong()
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise wrong()
        return value
    if annotation is Path:
        if not isinstance(value, str) or not value:
            raise wrong()
        return Path(value)
    if annotation is bytes:
        if not isinstance(value, str):
            raise wrong()
        return value.encode()
    if origin is Literal:
        if value not in get_args(annotation):
            raise wrong()
        return value
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        try:
            return annotation(value)
        except ValueError:
            raise wrong() from None
    if origin in (list, tuple, Sequence) or annotation in (list, tuple):
        if not isinstance(value, list):
            raise wrong()
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        item_type = args[0] if args else Any
        items = [_convert(item, item_type, f"{where}[{n}]") for n, item in enumerate(value)]
        return tuple(items) if origin is tuple or annotation is tuple else items
    if isinstance(annotation, type) and is_dataclass(annotation):
        return build(annotation, value, file=where.split(":")[0], where=where)
    raise ConfigError(f"{where}: cannot be set in a configuration file")


def check_tls_files(tls: TLSConfig) -> None:
    """A ConfigError naming the first certificate, key or CA file of ``tls`` that is missing.

    Checked before the TLS context is built, whose error (``[Errno 2] No such file or
    directory``) does not say which file.
    """
    for what, path in (
        ("certificate", tls.certificate),
        ("private key", tls.key),
        ("PKCS#12 file", tls.pkcs12),
        ("CA file", tls.ca_file),
        ("CA directory", tls.ca_dir),
    ):
        if path is not None and not Path(path).exists():
            raise ConfigError(f"TLS {what} {path} does not exist", key="tls")
