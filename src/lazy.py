"""Names a package re-exports but imports only when first used (PEP 562 ``__getattr__``).

A package's ``__init__`` that imported every module it re-exports would make each import of
it pay for all of them: ``import dicomwire`` for the node and pydicom, ``dicomwire store``
for the storage SCP and its index (docs/performance.md, start-up).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(
    namespace: MutableMapping[str, Any], modules: Mapping[str, str]
) -> Callable[[str], Any]:
    """The module ``__getattr__`` of the package whose ``globals()`` is ``namespace``:
    ``modules`` maps each lazy name to its module (relative to the package, or absolute);
    the name is imported on first use and kept, so later lookups are plain."""
    package = str(namespace["__name__"])

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    return __getattr__
