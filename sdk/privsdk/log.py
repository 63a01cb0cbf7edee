"""The one logger of privsdk.

Library code logs through ``get_logger(__name__)``; it never configures handlers
(that is the application's call). The CLI calls :func:`configure` once.
"""
from __future__ import annotations

import logging
import sys

ROOT = "privsdk"
_warned: set[str] = set()


def get_logger(name: str = ROOT) -> logging.Logger:
    """Return the privsdk logger for a module (``get_logger(__name__)``)."""
    if not name.startswith(ROOT):
        name = f"{ROOT}.{name}"
    return logging.getLogger(name)


def warn_once(key: str, message: str, logger: logging.Logger | None = None) -> None:
    """Log ``message`` as a warning the first time ``key`` is seen in this process."""
    if key in _warned:
        return
    _warned.add(key)
    (logger or get_logger()).warning(message)


class _CurrentStderrHandler(logging.StreamHandler):
    """A console handler that writes to whatever ``sys.stderr`` is when a record is emitted.

    Why: ``configure`` runs once per process, and a plain ``StreamHandler(sys.stderr)`` keeps the stream
    of that moment; when ``sys.stderr`` is later redirected (a host application, a test's capture) the CLI's
    messages, its refusals included, would go to the old stream and be lost.
    """

    @property  # type: ignore[override]
    def stream(self):  # noqa: D401
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:   # StreamHandler.__init__ assigns it; the current one is always used
        pass


def configure(verbosity: int = 0) -> None:
    """Set up console logging for the CLI: 0 = info, 1+ = debug, -1 = warnings only."""
    level = logging.INFO if verbosity == 0 else logging.DEBUG if verbosity > 0 else logging.WARNING
    root = logging.getLogger(ROOT)
    root.setLevel(level)
    if not any(getattr(h, "_privsdk", False) for h in root.handlers):
        handler = _CurrentStderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._privsdk = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.propagate = False
