"""Region finders: which parts of a frame a filter covers.

Built in: ``full`` (the whole frame), ``faces`` / ``haar`` (OpenCV's Haar
cascade), ``yunet:PATH`` (``cv2.FaceDetectorYN`` with a YuNet model). New finders
plug in with :func:`register_finder` or through the entry-point group
``privsdk.regions`` (a callable ``factory(**options) -> RegionFinder``). Face
finders are wrapped in :class:`HoldOver`, so a face missed by the detector stays
covered for ``hold`` frames. :class:`HeadLeveller` cuts a face out turned level, for
bundles that ask for it (``input.level_head``).

Example::

    from privsdk.regions import make_finder
    finder = make_finder("faces", aspect=1.0, hold=5)
    for region in finder.find(frame):
        print(region.roi, region.score, region.held)
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from ..errors import InputError
from ..log import get_logger
from .base import Region, RegionFinder, clip_region, expand_to_aspect, iou
from .full import FullFrame
from .holdover import HoldOver
from .level import HeadLeveller

_log = get_logger(__name__)

ENTRY_POINT_GROUP = "privsdk.regions"
_FACTORIES: Dict[str, Callable[..., RegionFinder]] = {}


def register_finder(name: str, factory: Callable[..., RegionFinder]) -> None:
    """Make ``make_finder(name, **options)`` call ``factory(**options)``."""
    if not name or not isinstance(name, str) or ":" in name:
        raise InputError(f"region finder name: expected a non-empty string without ':', got {name!r}")
    _FACTORIES[name] = factory


def _haar(**opts: Any) -> RegionFinder:
    from .faces import HaarFaces

    return HaarFaces(**opts)


def _entry_point_factories() -> Dict[str, Callable[..., RegionFinder]]:
    try:
        from importlib.metadata import entry_points

        eps = entry_points()
        group = eps.select(group=ENTRY_POINT_GROUP) if hasattr(eps, "select") else eps.get(ENTRY_POINT_GROUP, [])
    except Exception as exc:  # pragma: no cover - broken metadata
        _log.warning("could not read the %s entry points (%s)", ENTRY_POINT_GROUP, exc)
        return {}
    return {ep.name: ep.load for ep in group}


def finder_names() -> List[str]:
    """Every finder name :func:`make_finder` accepts (``yunet:PATH`` takes a model path)."""
    return sorted(set(_FACTORIES) | set(_entry_point_factories()) | {"yunet:PATH"})


def make_finder(spec: Any, *, aspect: float = 1.0, margin: Optional[float] = None, hold: int = 5,
                hold_seconds: Optional[float] = None, **options: Any) -> RegionFinder:
    """A finder from a name (``full``, ``faces``, ``haar``, ``yunet:PATH``, a plugin) or a RegionFinder.

    Face finders are wrapped in :class:`HoldOver` (``hold`` frames, or ``hold_seconds``);
    ``hold=0`` and ``hold_seconds=None`` disable it.
    """
    if isinstance(spec, RegionFinder):
        return spec
    if not isinstance(spec, str):
        raise InputError(f"regions: expected a name ({', '.join(finder_names())}) or a RegionFinder, got {spec!r}")
    if spec == "full":
        return FullFrame()
    opts = dict(options)
    if margin is not None:
        opts["margin"] = margin
    if spec.startswith("yunet:"):
        from .faces import YuNetFaces

        finder: RegionFinder = YuNetFaces(spec[len("yunet:"):], aspect=aspect, **opts)
    elif spec in _FACTORIES:
        factory = _FACTORIES[spec]
        finder = factory(aspect=aspect, **opts) if spec in ("faces", "haar") else factory(**opts)
    else:
        plugins = _entry_point_factories()
        if spec not in plugins:
            raise InputError(f"regions: unknown region finder {spec!r}; expected one of {', '.join(finder_names())}")
        finder = plugins[spec]()(**opts)
        if not isinstance(finder, RegionFinder):
            raise InputError(f"regions plugin {spec!r} returned {type(finder).__name__}; expected a RegionFinder")
    if hold > 0 or hold_seconds is not None:
        finder = HoldOver(finder, frames=hold, seconds=hold_seconds)
    return finder


register_finder("faces", _haar)
register_finder("haar", _haar)

__all__ = ["Region", "RegionFinder", "FullFrame", "HoldOver", "HeadLeveller", "make_finder", "register_finder", "finder_names",
           "iou", "clip_region", "expand_to_aspect", "ENTRY_POINT_GROUP"]
