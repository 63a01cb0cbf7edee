"""The exceptions privsdk raises.

Every error says what was wrong and what was expected. They all derive from
:class:`PrivsdkError`, so one ``except privsdk.PrivsdkError`` catches them, and
the input-validation ones also derive from :class:`ValueError` so that code
written against plain Python conventions keeps working.
"""
from __future__ import annotations


class PrivsdkError(Exception):
    """Base class of every privsdk error."""


class InputError(PrivsdkError, ValueError):
    """An argument has the wrong type, dtype, shape, range or value."""


class BundleError(PrivsdkError):
    """A filter bundle is missing, malformed, of another version or tampered with."""


class BackendError(PrivsdkError, RuntimeError):
    """A backend (onnxruntime, TensorRT, torch) failed to load or to run."""


class SourceError(PrivsdkError, RuntimeError):
    """A frame source (camera, file, stream) cannot be opened or read."""


class RegionError(PrivsdkError, RuntimeError):
    """A region finder (face detector) failed."""


class DependencyError(PrivsdkError, ImportError):
    """An optional dependency needed for the requested feature is not installed."""


def describe_array(a: object) -> str:
    """A short description of an array-like for error messages: type, dtype, shape."""
    shape = getattr(a, "shape", None)
    dtype = getattr(a, "dtype", None)
    if shape is None:
        return type(a).__name__
    return f"{type(a).__name__}(dtype={dtype}, shape={tuple(shape)})"
