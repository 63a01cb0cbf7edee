"""privsdk.export: trained checkpoints → filter bundles (ONNX + maps), bundles → TensorRT engines.

Modules (each imports torch/onnx/tensorrt inside its functions, so importing
this package stays light):

- :mod:`.checkpoint`     read and check a training checkpoint, rebuild its network;
- :mod:`.onnx_graph`     ONNX export (named image + noise inputs, dynamic batch), onnx.checker;
- :mod:`.parity`         onnxruntime vs PyTorch, and end to end through the fused kernels;
- :mod:`.variants`       optional graph simplification and the FP16 variant;
- :mod:`.bundle_export`  the whole checkpoint → bundle export (:func:`export_checkpoint`);
- :mod:`.report`         embed a ``privsdk eval`` report, refusing one about other files;
- :mod:`.level_head`     a levelling bundle from an existing one (``--level-head``);
- :mod:`.erase_secret`   an erasing bundle from an existing one: LEACE fit on its outputs (``--erase-secret``);
- :mod:`.grey_lower`     a bundle whose post-kernel greys the bottom of every face (``--grey-lower``);
- :mod:`.residual_scale` a residual U-Net keeping a share of its network's change (``--residual-scale``);
- :mod:`.calibration`    INT8 calibration batches from real images through the pre-kernel;
- :mod:`.engine`         TensorRT engine building, checking and caching;
- :mod:`.cli`            ``privsdk export``.

Example::

    from privsdk.export import export_checkpoint, ExportOptions
    export_checkpoint("runs/emotion/best.pt", "bundles/emotion", ExportOptions(name="emotion"))
"""
from __future__ import annotations

from privsdk.lazy import lazy_getattr

_LAZY = {
    "export_checkpoint": ("privsdk.export.bundle_export", "export_checkpoint"),
    "export_filter": ("privsdk.export.bundle_export", "export_filter"),
    "ExportOptions": ("privsdk.export.bundle_export", "ExportOptions"),
    "embed_report": ("privsdk.export.report", "embed_report"),
    "level_bundle": ("privsdk.export.level_head", "level_bundle"),
    "erase_bundle": ("privsdk.export.erase_secret", "erase_bundle"),
    "grey_lower_bundle": ("privsdk.export.grey_lower", "grey_lower_bundle"),
    "residual_scale_bundle": ("privsdk.export.residual_scale", "residual_scale_bundle"),
    "build_engine": ("privsdk.export.engine", "build_engine"),
    "EngineRequest": ("privsdk.export.engine", "EngineRequest"),
}


__getattr__ = lazy_getattr(globals(), _LAZY)


__all__ = list(_LAZY)
