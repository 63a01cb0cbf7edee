"""Capture and output: frame sources from one URI-like string, and sinks.

Example::

    from privsdk import Filter
    from privsdk.io import open_source, open_sink
    f = Filter("emotion")
    with open_source("input.mp4") as src, open_sink("out.mp4", fps=src.fps) as sink:
        for frame in f.stream(src):
            sink.write(frame)

Importing this package imports no OpenCV; opening a source or sink does.
"""
from __future__ import annotations

from .capture import gstreamer_available
from .sinks import (CallbackSink, GStreamerSink, ImageFolderSink, SideFile, Sink, VideoFileSink, WindowSink,
                    open_sink)
from .sources import CaptureSource, ImageSource, Source, SourceSpec, csi_pipeline, open_source, parse_source

__all__ = ["open_source", "parse_source", "open_sink", "Source", "SourceSpec", "ImageSource", "CaptureSource",
           "Sink", "CallbackSink", "WindowSink", "VideoFileSink", "GStreamerSink", "ImageFolderSink", "SideFile",
           "csi_pipeline", "gstreamer_available"]
