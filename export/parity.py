"""Parity checks of an export: onnxruntime vs PyTorch, and end to end through the fused kernels.

Every check returns plain numbers for the manifest's ``export`` section and
raises :class:`~privsdk.errors.BackendError` when a figure is outside its
tolerance, so a bad graph or bad maps never reach a bundle.

- :func:`onnx_vs_torch` -- the ONNX graph in onnxruntime against the PyTorch
  module on the same normalized image and noise tensors (max abs error).
- :func:`unet_end_to_end` -- a uint8 frame through ``privsdk.kernels.pre``
  (norm maps, noise inputs filled by the kernel), onnxruntime and
  ``privsdk.kernels.post``, against an independent torch pipeline (bilinear
  ``F.interpolate``, ``(x − mean) / std``, the module, quantization) fed the same
  noise: max abs uint8 error.
- :func:`lite_end_to_end` -- the lite maps in the fused kernel against the torch
  module: deterministic part (σ switched off / z = 0), the noise replayed
  exactly from the same seeded Philox stream, and a statistical check that the
  kernel's noise part is N(0, σ²).

Example::

    from privsdk.export.parity import onnx_vs_torch
    err = onnx_vs_torch(module, session, (64, 64), [{"name": "noise", "shape": [8, 4, 4]}])
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from privsdk.errors import BackendError
from privsdk.log import get_logger

from .onnx_graph import IMAGE_INPUT, example_inputs

_log = get_logger(__name__)

FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 2e-2
UINT8_TOLERANCE = 2
LITE_FLOAT_TOLERANCE = 1e-4
TEST_SEED = 20240607


def probe_frame(height: int, width: int, seed: int = 7) -> np.ndarray:
    """A deterministic BGR uint8 test frame with smooth gradients, edges and texture (no data files)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frame = np.empty((height, width, 3), np.float32)
    frame[..., 0] = 128 + 100 * np.sin(xx / 7.0) * np.cos(yy / 11.0)
    frame[..., 1] = 255 * xx / max(width - 1, 1)
    frame[..., 2] = np.where((xx // 9 + yy // 9) % 2 == 0, 40, 215)
    frame += rng.normal(0, 12, frame.shape)
    return np.clip(frame, 0, 255).round().astype(np.uint8)


def probe_rois(input_hw: Tuple[int, int]) -> Tuple[Tuple[int, int, int, int], ...]:
    """Regions of the test frame: one at the network size (no resize), one enlarged (resize both ways)."""
    h, w = input_hw
    return (5, 3, w, h), (2, 1, int(round(w * 1.5)) + 1, int(round(h * 1.5)) + 1)


def probe_frame_for(input_hw: Tuple[int, int]) -> np.ndarray:
    h, w = input_hw
    return probe_frame(2 * h + 9, 2 * w + 11)


def onnx_vs_torch(module: Any, session: Any, input_hw: Tuple[int, int], noise_inputs: Sequence[Mapping[str, Any]],
                  tolerance: float = FP32_TOLERANCE, batch: int = 3, what: str = "fp32") -> float:
    """Max abs error of the ONNX graph vs the module on the same image and noise (batch > 1: dynamic axis)."""
    import torch

    image, noise = example_inputs(input_hw, noise_inputs, batch=batch, seed=TEST_SEED)
    feeds = {IMAGE_INPUT: image, **{n["name"]: z for n, z in zip(noise_inputs, noise)}}
    got = session.run(None, feeds)[0]
    with torch.no_grad():
        want = module(torch.from_numpy(image), *[torch.from_numpy(z) for z in noise]).float().numpy()
    if got.shape != want.shape:
        raise BackendError(f"ONNX ({what}) output has shape {got.shape}, PyTorch gives {want.shape}")
    err = float(np.abs(got.astype(np.float32) - want).max())
    _log.info("onnxruntime vs PyTorch (%s, batch %d): max abs error %.3g (tolerance %.0e)", what, batch, err, tolerance)
    if not err <= tolerance:
        raise BackendError(f"onnxruntime and PyTorch disagree on the {what} graph: max abs error {err:.3g}, "
                           f"expected ≤ {tolerance:g}")
    return err


def _torch_resize(x: Any, size: Tuple[int, int]) -> Any:
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)


def _torch_crop01(frame: np.ndarray, roi: Tuple[int, int, int, int], input_hw: Tuple[int, int]) -> Any:
    """RGB [0, 1] network-size tensor 1×3×H×W of ``frame[roi]`` the torch way."""
    import torch

    x, y, w, h = roi
    rgb = np.ascontiguousarray(frame[y:y + h, x:x + w, ::-1].transpose(2, 0, 1)).astype(np.float32) / 255.0
    return _torch_resize(torch.from_numpy(rgb)[None], input_hw)


def _torch_to_uint8(y01: Any, roi: Tuple[int, int, int, int]) -> np.ndarray:
    """Network output 1×3×H×W → the region's BGR uint8 h×w×3, the torch way."""
    import torch

    _, _, w, h = roi
    back = _torch_resize(y01.float(), (h, w))[0]
    q = torch.floor(back.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    return q.transpose(1, 2, 0)[..., ::-1]


def unet_end_to_end(module: Any, session: Any, maps: Mapping[str, np.ndarray], norm: Mapping[str, np.ndarray],
                    noise_inputs: Sequence[Mapping[str, Any]], tolerance: int = UINT8_TOLERANCE,
                    what: str = "fp32") -> int:
    """Max abs uint8 error of kernels + onnxruntime vs the torch pipeline, over the test regions."""
    import torch

    from privsdk import kernels

    input_hw = tuple(maps["scale"].shape[1:])
    frame = probe_frame_for(input_hw)  # type: ignore[arg-type]
    mean = torch.from_numpy(np.asarray(norm["mean"], np.float32))[None]
    std = torch.from_numpy(np.asarray(norm["std"], np.float32))[None]
    worst = 0
    for roi in probe_rois(input_hw):  # type: ignore[arg-type]
        noise = [np.empty([int(d) for d in n["shape"]], np.float32) for n in noise_inputs]
        rng = kernels.NoiseSource(seed=TEST_SEED)
        x = kernels.pre(frame, roi, maps["scale"], maps["shift"], None, noise_outputs=noise, rng=rng)
        feeds = {IMAGE_INPUT: x[None], **{n["name"]: z[None] for n, z in zip(noise_inputs, noise)}}
        y = session.run(None, feeds)[0][0]
        out = frame.copy()
        kernels.post(np.ascontiguousarray(y, np.float32), out, roi,
                     maps.get("post_scale"), maps.get("post_shift"))
        with torch.no_grad():
            x01 = _torch_crop01(frame, roi, input_hw)  # type: ignore[arg-type]
            want = _torch_to_uint8(module((x01 - mean) / std, *[torch.from_numpy(z)[None] for z in noise]), roi)
        rx, ry, rw, rh = roi
        err = int(np.abs(out[ry:ry + rh, rx:rx + rw].astype(np.int16) - want.astype(np.int16)).max())
        worst = max(worst, err)
    _log.info("end to end (%s kernels + onnxruntime %s) vs torch: max abs uint8 error %d (tolerance %d)",
              kernels.IMPLEMENTATION, what, worst, tolerance)
    if worst > tolerance:
        raise BackendError(f"the fused kernels + onnxruntime ({what}) and the torch pipeline disagree by "
                           f"{worst} grey levels on the test frame; expected ≤ {tolerance}")
    return worst


def lite_end_to_end(module: Any, maps: Mapping[str, np.ndarray], tolerance: float = LITE_FLOAT_TOLERANCE,
                    stat_draws: int = 8) -> Dict[str, Any]:
    """Check a lite filter's maps in the fused kernel against the torch module; returns the figures."""
    import torch

    from privsdk import kernels

    input_hw = tuple(maps["scale"].shape[1:])
    n = int(np.prod(maps["scale"].shape))
    frame = probe_frame_for(input_hw)  # type: ignore[arg-type]
    det_err = 0.0
    noise_err = 0.0
    uint8_err = 0
    for roi in probe_rois(input_hw):  # type: ignore[arg-type]
        with torch.no_grad():
            x01 = _torch_crop01(frame, roi, input_hw)  # type: ignore[arg-type]
            want_det = module(x01, torch.zeros((1, 3, *input_hw))).float()
            z = kernels.NoiseSource(seed=TEST_SEED).normals(n, 0, 0).reshape(1, 3, *input_hw)
            want_noisy = module(x01, torch.from_numpy(np.ascontiguousarray(z))).float()
        got_det = kernels.pre(frame, roi, maps["scale"], maps["shift"], None)
        got_noisy = kernels.pre(frame, roi, maps["scale"], maps["shift"], maps["sigma"],
                                rng=kernels.NoiseSource(seed=TEST_SEED))
        # the module may clamp to [0, 1]; the post-kernel clamps: compare in the displayable range
        det_err = max(det_err, float(np.abs(np.clip(got_det, 0, 1) - want_det[0].clamp(0, 1).numpy()).max()))
        noise_err = max(noise_err, float(np.abs(np.clip(got_noisy, 0, 1) - want_noisy[0].clamp(0, 1).numpy()).max()))
        rx, ry, rw, rh = roi
        if (rh, rw) == input_hw:
            # uint8 only where no resize follows: the module clamps at network size, while the post-kernel
            # clamps after resizing back, so saturated pixels legitimately differ in a resized region
            out = frame.copy()
            kernels.post(got_noisy, out, roi, maps.get("post_scale"), maps.get("post_shift"))
            want8 = _torch_to_uint8(want_noisy, roi)
            uint8_err = max(uint8_err, int(np.abs(out[ry:ry + rh, rx:rx + rw].astype(np.int16) - want8).max()))
    stats = noise_statistics(frame, maps, stat_draws)
    figures = {"deterministic_max_abs": det_err, "replayed_noise_max_abs": noise_err,
               "end_to_end_max_abs_uint8": uint8_err, "noise": stats}
    _log.info("lite maps (%s kernel) vs torch module: deterministic %.3g, replayed noise %.3g, uint8 %d; "
              "noise z mean %.3f std %.3f", kernels.IMPLEMENTATION, det_err, noise_err, uint8_err,
              stats.get("z_mean", float("nan")), stats.get("z_std", float("nan")))
    problems = []
    if not det_err <= tolerance:
        problems.append(f"deterministic part differs by {det_err:.3g} (expected ≤ {tolerance:g})")
    if not noise_err <= tolerance:
        problems.append(f"with the same noise the outputs differ by {noise_err:.3g} (expected ≤ {tolerance:g})")
    if uint8_err > UINT8_TOLERANCE:
        problems.append(f"uint8 outputs differ by {uint8_err} (expected ≤ {UINT8_TOLERANCE})")
    if not stats["passed"]:
        problems.append(f"the kernel's noise is not N(0, σ²): {stats}")
    if problems:
        raise BackendError("the lite filter's maps do not reproduce the torch module: " + "; ".join(problems))
    return figures


def noise_statistics(frame: np.ndarray, maps: Mapping[str, np.ndarray], draws: int = 8) -> Dict[str, Any]:
    """Draw the kernel's noise from a fresh OS-keyed stream; check (out − deterministic) / σ is N(0, 1)."""
    from privsdk import kernels

    sigma = maps["sigma"]
    active = sigma > 1e-3  # below that, float32 rounding of (out − det) / σ dominates
    if not active.any():
        return {"passed": True, "samples": 0, "note": "σ is 0 everywhere: the filter adds no noise"}
    input_hw = sigma.shape[1:]
    roi = probe_rois(input_hw)[0]  # type: ignore[arg-type]
    det = kernels.pre(frame, roi, maps["scale"], maps["shift"], None).astype(np.float64)
    rng = kernels.NoiseSource()
    zs: List[np.ndarray] = []
    for _ in range(draws):
        noisy = kernels.pre(frame, roi, maps["scale"], maps["shift"], sigma, rng=rng).astype(np.float64)
        zs.append(((noisy - det)[active] / sigma[active]))
    z = np.concatenate(zs)
    mean, std = float(z.mean()), float(z.std())
    k = z.size
    # 6 standard errors: a false alarm is practically impossible, a wrong noise model is caught
    passed = abs(mean) <= 6 / np.sqrt(k) + 1e-3 and abs(std - 1) <= 6 / np.sqrt(2 * k) + 5e-3
    return {"passed": bool(passed), "samples": int(k), "z_mean": mean, "z_std": std}
