"""Embed a ``privsdk eval`` report into a bundle's manifest, checking it is about these files.

The report records the SHA-256 of the files it evaluated in
``report["filter"]["files"]`` (``{file name: sha256}``). It may be embedded
only in a bundle that ships exactly those files: every file it lists (other
than the manifest itself, which embedding rewrites) must be in the bundle with
the same hash, and the bundle's network and maps must be among them.

Example::

    from privsdk.export.report import read_report, embed_report
    report = read_report("runs/emotion/eval.json")
    embed_report("bundles/emotion", report)      # rewrites filter.json only
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Union

from privsdk.bundle import MANIFEST, NORM, ONNX, load_bundle, write_bundle
from privsdk.errors import BundleError, InputError
from privsdk.log import get_logger
from privsdk.registry import attackers_trained_on

_log = get_logger(__name__)


def read_report(path: Union[str, Path]) -> Dict[str, Any]:
    """Read an evaluation report JSON file; :class:`InputError` when it is not one."""
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"evaluation report {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"evaluation report {path}: not a readable JSON file ({exc})") from None
    report_files(report, str(path))
    return report


def report_files(report: Any, source: str = "<report>") -> Dict[str, str]:
    """The ``{file: sha256}`` the report evaluated; :class:`InputError` when the report lacks them."""
    files = report.get("filter", {}).get("files") if isinstance(report, dict) and \
        isinstance(report.get("filter"), dict) else None
    if not isinstance(files, dict) or not files or \
            not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise InputError(f"evaluation report {source}: expected report['filter']['files'] = "
                         "{file name: sha256} of the evaluated bundle (written by 'privsdk eval'), "
                         f"got {files!r}")
    return files


def check_report_matches(report: Mapping[str, Any], bundle_files: Mapping[str, str], source: str = "<report>",
                         bundle: str = "<bundle>", partial: bool = False) -> None:
    """Refuse a report of other files than ``bundle_files`` (``{name: sha256}``) with a clear :class:`InputError`.

    ``partial=True`` checks only the files already known (an early check during export).
    """
    evaluated = {k: v for k, v in report_files(report, source).items() if k != MANIFEST}
    problems = []
    for name, digest in sorted(evaluated.items()):
        have = bundle_files.get(name)
        if have is None:
            if not partial:
                problems.append(f"{name} was evaluated but is not in the bundle")
        elif have != digest:
            problems.append(f"{name} has SHA-256 {have[:16]}… in the bundle, {digest[:16]}… in the report")
    for name in (ONNX, NORM):
        if name in bundle_files and name not in evaluated:
            problems.append(f"the report does not cover the bundle's {name}")
    if problems:
        raise InputError(f"evaluation report {source} is about other files than bundle {bundle}: "
                         + "; ".join(problems)
                         + ". Evaluate the bundle itself ('privsdk eval BUNDLE') and embed that report "
                           "('privsdk export BUNDLE --report REPORT')")


def fewer_training_faces(report: Mapping[str, Any]) -> Optional[str]:
    """Why the report's attackers trained on less than the whole train split, or ``None`` when they did not.

    ``privsdk eval --limit N`` (a subset, for CPU time), ``--held-out-attacker`` (the validation faces) and
    ``--train-share`` / ``--held-back-attacker`` (part of the train split) all make weaker attackers than the
    protocol's, and a weaker attacker makes a filter look more private
    (docs/design-changes.md #21: ``emotion`` 0.10.0 read 0.528 on 2,000 training faces, 0.606 on all 9,215).
    """
    faces = attackers_trained_on(report)
    train = ((report.get("data") or {}).get("sizes") or {}).get("train") if faces else None
    if faces == "subset":
        return f"its attackers trained on {train} faces, a subset of the train split ('privsdk eval --limit')"
    if faces == "validation":
        return f"its attackers trained on the {train} validation faces ('privsdk eval --held-out-attacker')"
    if faces == "share":
        return f"its attackers trained on {train} faces, a share of the train split ('privsdk eval --train-share')"
    if faces == "held back":
        return (f"its attackers trained on the {train} training faces a filter's training held back "
                "('privsdk eval --held-back-attacker')")
    return None


def warn_if_fewer_training_faces(report: Mapping[str, Any], source: str = "<report>") -> None:
    """Log one warning when :func:`fewer_training_faces` finds the report's attackers weaker than the protocol's."""
    weaker = fewer_training_faces(report)
    if weaker:
        _log.warning("evaluation report %s: %s, so its numbers read a weaker attacker than the protocol's; "
                     "a bundle to ship embeds a report on the whole train split", source, weaker)


def embed_report(bundle_dir: Union[str, Path], report: Mapping[str, Any], source: str = "<report>") -> Path:
    """Write ``report`` under ``evaluation`` in the bundle's manifest; every other file stays byte-identical.

    A report whose attackers trained on less than the whole train split is embedded with a warning: its
    numbers read a weaker attacker than the protocol's.
    """
    def put(manifest: Dict[str, Any], bundle: Any) -> None:
        check_report_matches(report, bundle.manifest["files"], source, str(bundle_dir))
        warn_if_fewer_training_faces(report, source)
        manifest["evaluation"] = dict(report)

    rewrite_manifest(bundle_dir, put, "embedding a report")
    _log.info("embedded evaluation report %s into %s", source, bundle_dir)
    return Path(bundle_dir)


def rewrite_manifest(bundle_dir: Union[str, Path], change: Callable[[Dict[str, Any], Any], None], what: str) -> Path:
    """Load and verify a bundle directory, let ``change(manifest, bundle)`` edit its manifest, write it back.

    The network and maps stay byte-identical (their hashes are checked before and after).
    """
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise BundleError(f"filter bundle {bundle_dir}: {what} needs a bundle directory (unzip a .zip bundle first)")
    bundle = load_bundle(bundle_dir)  # verifies every hash before anything is rewritten
    manifest = {k: v for k, v in bundle.manifest.items() if k != "files"}
    change(manifest, bundle)
    others = {name: data for name, data in bundle.files.items() if name != ONNX}
    # norm.npz is passed as bytes too, so write_bundle keeps it byte-identical rather than re-saving the maps
    write_bundle(bundle_dir, manifest, bundle.maps, onnx_bytes=bundle.files.get(ONNX), extra_files=others)
    after = load_bundle(bundle_dir).manifest["files"]
    if after != bundle.manifest["files"]:  # pragma: no cover - guards write_bundle's behaviour
        raise BundleError(f"filter bundle {bundle_dir}: {what} changed file hashes "
                          f"{bundle.manifest['files']} → {after}")
    return bundle_dir
