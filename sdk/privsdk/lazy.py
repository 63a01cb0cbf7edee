"""Module attributes resolved on first use (PEP 562), so heavy imports wait until needed."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, Tuple


def lazy_getattr(module_globals: Dict[str, Any], table: Dict[str, Tuple[str, str]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``table[name] = (module, attribute)`` on first access.

    Example (in a package's ``__init__.py``)::

        __getattr__ = lazy_getattr(globals(), {"Filter": ("privsdk.filter", "Filter")})
    """
    package = module_globals.get("__name__", "module")

    def __getattr__(name: str) -> Any:
        if name in table:
            module, attr = table[name]
            value = getattr(importlib.import_module(module), attr)
            module_globals[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
