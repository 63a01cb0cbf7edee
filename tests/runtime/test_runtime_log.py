"""The CLI's console logging follows ``sys.stderr`` as it is when a message is written."""
from __future__ import annotations

import io
import logging
import sys

from privsdk.log import configure, get_logger


def test_messages_go_to_the_stderr_of_the_moment_not_of_configure(monkeypatch):
    configure(0)                                      # once, as the CLI does, with whatever stderr is now
    later = io.StringIO()
    monkeypatch.setattr(sys, "stderr", later)         # then redirected (a host application, a test's capture)
    get_logger("cli").error("refused: expected a bundle")
    assert "ERROR privsdk.cli: refused: expected a bundle" in later.getvalue()
    handlers = [h for h in logging.getLogger("privsdk").handlers if getattr(h, "_privsdk", False)]
    assert len(handlers) == 1                         # configure twice adds no second handler
    configure(0)
    assert len([h for h in logging.getLogger("privsdk").handlers if getattr(h, "_privsdk", False)]) == 1
