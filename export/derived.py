"""A new bundle made from an existing one (``--level-head``, ``--erase-secret``): the manifest carried over.

The source's manifest is copied without its file hashes and its evaluation (the new bundle's files
differ, so a report of the source says nothing about it); name, version and description are replaced
or extended, and ``export.<step>`` records what it was made from and when.

Example::

    from privsdk.bundle import load_bundle
    from privsdk.export.derived import derived_manifest
    b = load_bundle("sdk/privsdk/filters/emotion-lite")
    m = derived_manifest(b, "level_head", suffix="-levelled", sentence="Faces are cut out level.")
    m["name"], m["evaluation"]          # ('emotion-lite-levelled', None)
"""
from __future__ import annotations

import datetime as _dt
from typing import Any, Dict, Optional


def derived_manifest(bundle: Any, step: str, *, suffix: str, sentence: str, name: Optional[str] = None,
                     version: Optional[str] = None, description: Optional[str] = None) -> Dict[str, Any]:
    """``bundle``'s manifest for a bundle derived from it by ``step`` (no ``files``; ``evaluation`` None).

    Defaults: the source's name + ``suffix``, its version, its description + ``sentence``.
    """
    manifest = {k: v for k, v in bundle.manifest.items() if k not in ("files", "evaluation")}
    manifest["name"] = name or f"{bundle.name}{suffix}"
    manifest["version"] = version or str(bundle.manifest.get("version"))
    manifest["description"] = description or f"{bundle.manifest.get('description', '')} {sentence}".strip()
    manifest["export"] = dict(manifest.get("export") or {}, **{step: {
        "from": {"name": bundle.name, "version": bundle.manifest.get("version"), "files": bundle.manifest["files"]},
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}})
    manifest["evaluation"] = None
    return manifest


__all__ = ["derived_manifest"]
