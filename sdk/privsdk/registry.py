"""The filters that ship inside the package, and name-or-path resolution.

Bundled filters are bundle directories under ``privsdk/filters/<name>/`` (or
``<name>.zip`` there). :func:`filters` lists them with the numbers their
manifests report; :func:`resolve` turns what a user passes to
:class:`privsdk.Filter` -- a bundled name, a bundle directory or zip, or a
training checkpoint -- into a path, failing with a :class:`BundleError` that
lists what is available.

Example::

    import privsdk
    for f in privsdk.filters():
        print(f.name, f.kind, f.secret, f.numbers)
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

from .bundle import MANIFEST
from .errors import BundleError
from .log import get_logger

_log = get_logger(__name__)

#: Where the bundled filters live inside the installed package.
FILTERS_DIR = Path(__file__).resolve().parent / "filters"
#: File suffixes taken as training checkpoints (run by the torch backend).
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


@dataclass(frozen=True)
class FilterInfo:
    """One bundled filter as :func:`filters` reports it."""

    name: str
    path: Path
    kind: str
    version: str
    description: str
    secret: List[str]
    utility: List[str]
    input_size: tuple
    #: Headline numbers from the manifest's evaluation report (may be empty).
    numbers: Dict[str, Any] = field(default_factory=dict)
    #: What those numbers were measured on, in words (empty without a report).
    measured_on: str = ""


def _read_manifest(path: Path) -> Dict[str, Any]:
    if path.is_dir():
        return json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    with zipfile.ZipFile(path) as z:
        member = next(n for n in z.namelist() if Path(n).name == MANIFEST)
        return json.loads(z.read(member).decode("utf-8"))


def _flatten_numbers(report: Any, prefix: str = "", out: Optional[Dict[str, Any]] = None,
                     depth: int = 0) -> Dict[str, Any]:
    """Pick the scalar numbers out of an evaluation report (nested dicts), keyed by dotted path."""
    out = {} if out is None else out
    if isinstance(report, dict) and depth < 4:
        for key, value in report.items():
            if key in ("filter", "files", "protocol", "config", "machine", "versions"):
                continue
            _flatten_numbers(value, f"{prefix}{key}.", out, depth + 1)
    elif isinstance(report, (int, float)) and not isinstance(report, bool):
        out[prefix.rstrip(".")] = report
    return out


def headline_numbers(manifest: Dict[str, Any]) -> Dict[str, Any]:
    """The measured numbers a manifest reports: its evaluation's ``summary`` if present, else every scalar."""
    evaluation = manifest.get("evaluation") or {}
    if not isinstance(evaluation, dict):
        return {}
    summary = evaluation.get("summary")
    if isinstance(summary, dict):
        return _flatten_numbers(summary)
    return _flatten_numbers(evaluation)


def attackers_trained_on(report: Any) -> str:
    """Which faces an evaluation report's attackers trained on: ``"training"`` (the whole train split, the
    protocol's), ``"subset"`` (``privsdk eval --limit``), ``"validation"`` (``--held-out-attacker``),
    ``"share"`` (``--train-share``: the share of the train split a filter trained with ``data.train_share`` was
    fit on), ``"held back"`` (``--held-back-attacker``: the rest of it), or ``""`` when the report does not say.
    The first makes the strongest attacker: a figure is read with it."""
    data = report.get("data") if isinstance(report, Mapping) else None
    if not isinstance(data, Mapping):
        return ""
    if "subset" in data:
        return "subset"
    if "held_out" in data:
        return "validation"
    share = data.get("train_share")
    if isinstance(share, Mapping):
        return "held back" if share.get("attackers_trained_on") == "held_back" else "share"
    return "training"


def measured_on(manifest: Dict[str, Any]) -> str:
    """What the manifest's evaluation measured, in words: the test faces, and what its attackers trained on.

    The attackers' training set changes the figures (a subset or other faces make a weaker attacker), so a
    number is shown with it: ``"smilesmiled test split (1975 faces); attackers trained on smilesmiled's 9215
    training faces, attacker seed 0"``.
    """
    evaluation = manifest.get("evaluation")
    faces = attackers_trained_on(evaluation)
    if not faces:
        return ""
    data = evaluation["data"]
    sizes = data.get("sizes") or {}
    train, test = sizes.get("train"), sizes.get("test")
    tested = data.get("test_set") or data.get("name", "?")
    trained = data.get("train_set") or tested
    attackers = {"subset": f"attackers trained on {train} of {trained}'s training faces (a subset)",
                 "validation": f"attackers trained on {trained}'s {train} validation faces",
                 "share": f"attackers trained on {train} of {trained}'s training faces (the filter's share)",
                 "held back": f"attackers trained on {train} of {trained}'s training faces that the filter's "
                              "training held back",
                 "training": f"attackers trained on {trained}'s {train} training faces"}[faces]
    seed = ((evaluation.get("protocol") or {}).get("settings") or {}).get("seed")
    return f"{tested} test split ({test} faces); {attackers}" + (f", attacker seed {seed}" if seed is not None else "")


def _candidates() -> Dict[str, Path]:
    found: Dict[str, Path] = {}
    if not FILTERS_DIR.is_dir():
        return found
    for p in sorted(FILTERS_DIR.iterdir()):
        if p.is_dir() and (p / MANIFEST).is_file():
            found[p.name] = p
        elif p.suffix == ".zip" and p.is_file():
            found.setdefault(p.stem, p)
    return found


def filters() -> List[FilterInfo]:
    """The filters bundled with this privsdk, with their measured numbers (manifest ``evaluation``).

    A bundled filter whose manifest cannot be read is skipped with a warning.
    """
    infos: List[FilterInfo] = []
    for name, path in _candidates().items():
        try:
            m = _read_manifest(path)
            inp = m.get("input", {})
            infos.append(FilterInfo(name=str(m.get("name", name)), path=path, kind=str(m.get("kind", "?")),
                                    version=str(m.get("version", "?")), description=str(m.get("description", "")),
                                    secret=list(m.get("secret", [])), utility=list(m.get("utility", [])),
                                    input_size=(inp.get("height"), inp.get("width")),
                                    numbers=headline_numbers(m), measured_on=measured_on(m)))
        except Exception as exc:  # a broken bundled filter must not hide the others
            _log.warning("bundled filter %s has an unreadable manifest (%s); skipping it", path, exc)
    return infos


def available_names() -> List[str]:
    """Names of the bundled filters."""
    return list(_candidates())


def resolve(name_or_path: Union[str, Path]) -> Path:
    """Path of a bundled filter name, a bundle directory/zip or a checkpoint; BundleError otherwise."""
    if not isinstance(name_or_path, (str, Path)) or str(name_or_path) == "":
        raise BundleError(f"filter: expected a bundled filter name or a path to a bundle, got {name_or_path!r}")
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    bundled = _candidates()
    if str(name_or_path) in bundled:
        return bundled[str(name_or_path)]
    names = ", ".join(bundled) or "none are installed"
    looks_like_path = any(sep in str(name_or_path) for sep in ("/", "\\")) or path.suffix in (".zip", *CHECKPOINT_SUFFIXES)
    if looks_like_path:
        raise BundleError(f"filter {str(name_or_path)!r}: no such bundle directory, .zip or checkpoint; "
                          f"expected an existing path or a bundled filter name (bundled: {names})")
    raise BundleError(f"filter {str(name_or_path)!r} is not bundled with this privsdk (bundled filters: {names}); "
                      "expected one of those names or a path to a filter bundle (a directory with filter.json, "
                      "or a .zip of one)")


def is_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a training checkpoint (by suffix) rather than a bundle."""
    return path.is_file() and path.suffix in CHECKPOINT_SUFFIXES


__all__ = ["FilterInfo", "filters", "available_names", "resolve", "is_checkpoint", "headline_numbers", "FILTERS_DIR"]
