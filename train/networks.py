"""The networks of training: filters (stochastic U-Net, lite) and the estimators.

Filters (``build_filter(kind, **arch)``, CONTRIBUTING.md):

- ``"unet"`` -- :class:`StochasticUNet` (papers 000 and 002): ``forward(image, noise)``
  with ``image`` the per-location normalized input N×3×H×W and ``noise`` an
  explicit N(0, 1) input N×C×h×w concatenated at the bottleneck
  (``module.noise_shape == (C, h, w)``); sigmoid output, RGB in [0, 1]. There is
  no random op in the graph, so it exports to ONNX / TensorRT with the noise as
  an input the runtime fills.
- ``"lite"`` -- :class:`LiteFilter`: a learned per-location affine map plus a
  learned per-location noise σ, ``forward(x01, z) = clamp(x01·scale + shift + σ·z, 0, 1)``;
  ``maps()`` gives the maps the fused kernel runs.

Normalization choices inside the U-Net (``norm=``): ``"perloc"`` (paper 003:
per-location mean/variance over the batch, no affine parameters and no biases,
running statistics at inference, which export as element-wise constants),
``"batch"``, ``"instance"``, ``"none"``.

Estimators: :class:`SmallResNet` (classifier or regressor on x01 images, used as
attacker, frozen utility model and pose regressor), :class:`ReconstructionDecoder`
(paper 004's adversary) and :class:`SecretGenerator` (paper 002's generator).

Example::

    import torch
    from privsdk.train.networks import build_filter
    f = build_filter("unet", size=64)
    y = f(torch.zeros(2, 3, 64, 64), torch.randn(2, *f.noise_shape))   # 2×3×64×64 in [0, 1]
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from privsdk.errors import InputError

NORMS = ("perloc", "batch", "instance", "none")
FILTER_KINDS = ("unet", "lite")


class PerLocationNorm(nn.Module):
    """Per-location normalization without biases (paper 003).

    Training: each (channel, y, x) location is normalized by the mean and
    variance of that location over the batch; running estimates are kept.
    Inference: ``(x − running_mean) · running_invstd``, element-wise constants
    (exports as Sub/Mul). No learned affine, no bias.
    """

    def __init__(self, channels: int, height: int, width: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum = float(momentum)
        self.eps = float(eps)
        self.register_buffer("running_mean", torch.zeros(1, channels, height, width))
        self.register_buffer("running_var", torch.ones(1, channels, height, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] > 1:
            xf = x.float()  # statistics in float32, also under autocast
            mean = xf.mean(dim=0, keepdim=True)
            var = xf.var(dim=0, unbiased=False, keepdim=True)
            with torch.no_grad():
                n = x.shape[0]
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach() * n / (n - 1), self.momentum)
            return ((xf - mean) * torch.rsqrt(var + self.eps)).to(x.dtype)
        return (x - self.running_mean.to(x.dtype)) * torch.rsqrt(self.running_var + self.eps).to(x.dtype)


def _norm(kind: str, channels: int, hw: int) -> nn.Module:
    if kind == "perloc":
        return PerLocationNorm(channels, hw, hw)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise InputError(f"unknown normalization {kind!r}; expected one of {list(NORMS)}")


class _ConvBlock(nn.Sequential):
    """conv3×3 → norm → LeakyReLU, twice. Convs carry no bias when a norm follows."""

    def __init__(self, cin: int, cout: int, norm: str, hw: int):
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=bias), _norm(norm, cout, hw), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=bias), _norm(norm, cout, hw), nn.LeakyReLU(0.2, inplace=True),
        )


class StochasticUNet(nn.Module):
    """A small U-Net filter q(x, z): normalized image + explicit bottleneck noise → RGB in [0, 1].

    Args:
        size: input height = width (a multiple of 2**depth).
        in_channels: image channels (3).
        base: channels of the first level; level i has base·2**i.
        depth: number of down-samplings.
        noise_channels: channels of the N(0, 1) noise concatenated at the bottleneck.
        norm: one of ``perloc``, ``batch``, ``instance``, ``none``.
        extra_channels: extra constant input channels concatenated to the image (e.g. the
            one-hot secret of paper 002's generator); 0 for a filter.
        residual: output ``clamp(x01 + head, 0, 1)`` instead of ``sigmoid(head)``, with a zero-initialized
            head: the filter starts as the identity and every pixel it does not need to change stays exact
            (a sigmoid output has to re-synthesize the whole face, which costs fidelity and identity everywhere).
            ``x01`` is recovered from the normalized input with the buffers ``input_mean`` / ``input_std``
            (the bundle's per-location maps; set them with :meth:`set_input_norm`).
        lower_fill: the share of the crop's rows, from the bottom, that the network never sees (residual
            only): the mouth and cheeks, where a smile is plainest, are replaced before any layer reads them
            by the per-location mean face of the training data, shifted per channel by how far this face's
            seen rows are from the mean face (so a dark or coloured face gets a dark or coloured mean mouth,
            not a grey one, and the filled rows vary from face to face: the per-location normalization
            divides by their spread, which must not be 0). The network may repaint them; its adversary sees
            to it that what it paints does not carry the secret. 0 turns it off.
        lower_fill_feather: the height of the ramp, as a share of the rows, from "seen" to "filled" above
            the filled rows (a hard edge would draw a line across every face).
        lower_fill_rank: 0 fills with the mean face; ``r > 0`` adds a lower face *predicted from the seen
            rows* (their brightness pattern, through ``r`` principal components and a least-squares fit, see
            :meth:`fit_lower_fill`): the chin, jaw and shading follow this face's pose, build and light, so
            the fill keeps more of the person, while the mouth painted is class ``lower_fill_class``'s. The
            fill is still a function of the seen rows alone, so it adds nothing about the secret that those
            rows do not already show.
        lower_fill_class: the secret class whose lower face the predicted fill paints (for ``smile``, 0:
            not smiling), so a model that was never retrained reads every face as that class.
    """

    def __init__(self, size: int = 64, in_channels: int = 3, base: int = 8, depth: int = 3,
                 noise_channels: int = 8, norm: str = "perloc", extra_channels: int = 0, residual: bool = False,
                 lower_fill: float = 0.0, lower_fill_feather: float = 0.1, lower_fill_rank: int = 0,
                 lower_fill_class: int = 0):
        super().__init__()
        _check_lower_fill(lower_fill, lower_fill_feather)
        if norm not in NORMS:
            raise InputError(f"unknown normalization {norm!r}; expected one of {list(NORMS)}")
        if depth < 1 or size % (2 ** depth):
            raise InputError(f"U-Net size {size} must be divisible by 2**depth = {2 ** depth}")
        if noise_channels < 1:
            raise InputError(f"noise_channels is {noise_channels}; expected at least 1 (the filter is stochastic)")
        self.size, self.depth = int(size), int(depth)
        self.extra_channels = int(extra_channels)
        chans = [base * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        self.pool = nn.ModuleList()
        cin = in_channels + extra_channels
        for i in range(depth):
            self.down.append(_ConvBlock(cin, chans[i], norm, size >> i))
            self.pool.append(nn.Conv2d(chans[i], chans[i], 2, stride=2))
            cin = chans[i]
        bottom = size >> depth
        self.noise_shape: Tuple[int, int, int] = (int(noise_channels), bottom, bottom)
        self.bottleneck = _ConvBlock(chans[depth - 1] + noise_channels, chans[depth], norm, bottom)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in reversed(range(depth)):
            self.up.append(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2))
            self.dec.append(_ConvBlock(2 * chans[i], chans[i], norm, size >> i))
        self.head = nn.Conv2d(chans[0], 3, 1)
        self.residual = bool(residual)
        if self.residual:
            if in_channels != 3:
                raise InputError(f"a residual U-Net needs 3 input channels (RGB), got {in_channels}")
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
            self.register_buffer("input_mean", torch.full((3, size, size), 0.5))
            self.register_buffer("input_std", torch.full((3, size, size), 0.25))
        self.lower_fill = float(lower_fill)
        if self.lower_fill > 0:
            if not self.residual:
                raise InputError("lower_fill needs residual=True (the fill is made from the per-location maps "
                                 "the residual U-Net keeps)")
            self.register_buffer("seen_rows", lower_fill_weights(size, self.lower_fill, float(lower_fill_feather)))
        if lower_fill_rank < 0 or lower_fill_class < 0:
            raise InputError(f"lower_fill_rank is {lower_fill_rank} and lower_fill_class {lower_fill_class}; "
                             "expected integers >= 0")
        if lower_fill_rank and not self.lower_fill:
            raise InputError(f"lower_fill_rank is {lower_fill_rank} but lower_fill is 0; expected a share of "
                             "rows to fill before a predicted fill")
        self.lower_fill_rank, self.lower_fill_class = int(lower_fill_rank), int(lower_fill_class)
        if self.lower_fill_rank:
            pixels = size * size
            # until fit_lower_fill runs, the prediction is 0: the plain mean-face fill
            self.register_buffer("fill_seen_mean", torch.zeros(pixels))
            self.register_buffer("fill_basis", torch.zeros(pixels, self.lower_fill_rank))
            self.register_buffer("fill_coef", torch.zeros(self.lower_fill_rank, pixels))
            self.register_buffer("fill_bias", torch.zeros(pixels))

    def set_input_norm(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """The per-location maps the input was normalized with (``(x01 − mean) / std``); residual only."""
        if self.residual:
            self.input_mean.copy_(torch.as_tensor(mean).reshape(self.input_mean.shape))
            self.input_std.copy_(torch.as_tensor(std).reshape(self.input_std.shape))

    def _fill_lower(self, image: torch.Tensor) -> torch.Tensor:
        """The normalized input with its bottom rows replaced by the mean face plus this face's colour offset.

        The residual output then adds to the filled face, not to the original one.
        """
        seen = self.seen_rows.to(image.dtype)                                   # 1×1×H×1
        std = self.input_std.to(image.dtype)
        away = image * std                                                      # x01 − mean face
        offset = _colour_offset(away, seen)                                     # N×3×1×1
        fill = offset
        if self.lower_fill_rank:
            fill = offset + self._predicted_fill(away - offset, seen)
        return image * seen + (1.0 - seen) * fill / std

    def _predicted_fill(self, shape: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """N×1×H×W: the lower face's brightness (away from the mean face) predicted from the seen rows'."""
        n, _, h, w = shape.shape
        seen_brightness = (shape.mean(dim=1, keepdim=True) * seen).reshape(n, h * w)
        codes = (seen_brightness - self.fill_seen_mean) @ self.fill_basis
        return (codes @ self.fill_coef + self.fill_bias).reshape(n, 1, h, w)

    @torch.no_grad()
    def fit_lower_fill(self, images01: torch.Tensor, secret: torch.Tensor, ridge: float = 1e-3,
                       chunk: int = 1024) -> Dict[str, float]:
        """Fit the predicted fill (``lower_fill_rank > 0``) on training faces; call after :meth:`set_input_norm`.

        The seen rows' brightness (this face's colour offset removed, as in the fill) is reduced to
        ``lower_fill_rank`` principal components; the whole face's brightness is then regressed on those
        components *and* the secret's one-hot class (ridge ``ridge`` × the mean component variance), so the
        secret's own effect goes to its class columns and the components keep only what varies within a
        class (pose, build, light). The fill paints class ``lower_fill_class``.

        Args:
            images01: N×3×H×W training faces, float in [0, 1] or uint8 (the training split only: test
                faces stay unseen).
            secret: N secret class indices.
        Returns:
            ``{"explained": share of the filled rows' brightness variance the fit explains on these faces}``.
        """
        if not self.lower_fill_rank:
            raise InputError("fit_lower_fill needs lower_fill_rank > 0")
        n, _, h, w = images01.shape
        classes = int(secret.max()) + 1
        if not 0 <= self.lower_fill_class < classes or n < self.lower_fill_rank + classes:
            raise InputError(f"fit_lower_fill got {n} faces of {classes} secret classes for lower_fill_class "
                             f"{self.lower_fill_class} and rank {self.lower_fill_rank}; expected that class "
                             "present and more faces than rank + classes")
        seen = self.seen_rows.to(torch.float64)
        seen_parts, whole_parts = [], []
        for start in range(0, n, chunk):
            part = images01[start:start + chunk].to(torch.float64)
            if images01.dtype == torch.uint8:
                part = part / 255.0
            away = part - self.input_mean.to(torch.float64)
            offset = _colour_offset(away, seen)
            brightness = (away - offset).mean(dim=1, keepdim=True)
            whole_parts.append(brightness.reshape(-1, h * w))
            seen_parts.append((brightness * seen).reshape(-1, h * w))
        seen_b, whole_b = torch.cat(seen_parts), torch.cat(whole_parts)
        seen_mean = seen_b.mean(dim=0)
        centred = seen_b - seen_mean
        _, eigvec = torch.linalg.eigh(centred.T @ centred / n)             # ascending eigenvalues
        basis = eigvec[:, -self.lower_fill_rank:].flip(1)                        # pixels × rank, largest first
        codes = centred @ basis
        design = torch.cat([codes, F.one_hot(secret.long().to(codes.device), classes).to(codes)], dim=1)
        gram = design.T @ design
        penalty = ridge * float(codes.var(dim=0).mean()) * n
        gram[:self.lower_fill_rank, :self.lower_fill_rank] += penalty * torch.eye(self.lower_fill_rank, dtype=gram.dtype)
        solution = torch.linalg.solve(gram, design.T @ whole_b)                  # (rank + classes) × pixels
        coef, class_rows = solution[:self.lower_fill_rank], solution[self.lower_fill_rank:]
        filled = (1.0 - seen).expand(1, 1, h, w).reshape(1, h * w)
        residual = ((whole_b - design @ solution) * filled).pow(2).sum()
        total = ((whole_b - whole_b.mean(dim=0)) * filled).pow(2).sum()
        self.fill_seen_mean.copy_(seen_mean.to(self.fill_seen_mean))
        self.fill_basis.copy_(basis.to(self.fill_basis))
        self.fill_coef.copy_(coef.to(self.fill_coef))
        self.fill_bias.copy_(class_rows[self.lower_fill_class].to(self.fill_bias))
        return {"explained": float(1.0 - residual / total)}

    def forward(self, image: torch.Tensor, noise: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        if self.lower_fill > 0:
            image = self._fill_lower(image)
        x = image if extra is None else torch.cat([image, extra], dim=1)
        skips = []
        for block, pool in zip(self.down, self.pool):
            x = block(x)
            skips.append(x)
            x = pool(x)
        x = self.bottleneck(torch.cat([x, noise.to(x.dtype)], dim=1))
        for up, block, skip in zip(self.up, self.dec, reversed(skips)):
            x = block(torch.cat([up(x), skip], dim=1))
        if self.residual:
            x01 = image * self.input_std + self.input_mean
            return torch.clamp(x01 + self.head(x).to(x01.dtype), 0.0, 1.0)
        return torch.sigmoid(self.head(x))


def _check_lower_fill(share: float, feather: float) -> None:
    """The U-Net's and the lite filter's ``lower_fill`` / ``lower_fill_feather`` arguments, checked alike."""
    if not 0.0 <= share < 1.0:
        raise InputError(f"lower_fill is {share}; expected a share of the rows in [0, 1)")
    if not 0.0 <= feather <= 1.0 - share:
        raise InputError(f"lower_fill_feather is {feather}; expected a share in "
                         f"[0, {1.0 - share:g}] (the rows above the filled ones)")


def _colour_offset(away: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """N×C×1×1: how far each face's seen rows are from the mean face, per channel (weighted by ``seen``)."""
    return (away * seen).sum(dim=(2, 3), keepdim=True) / (seen.sum() * away.shape[3])


def lower_fill_weights(size: int, share: float, feather: float) -> torch.Tensor:
    """1×1×size×1 row weights: 1 where a row is seen, 0 in the bottom ``share`` of rows, a linear ramp between.

    >>> lower_fill_weights(8, 0.25, 0.125).flatten().tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0]
    """
    centre = (np.arange(size) + 0.5) / size            # row centres as shares of the height
    start = 1.0 - share                                # the first filled share
    if feather > 0:
        w = np.clip((start - centre) / feather, 0.0, 1.0)
    else:
        w = (centre < start).astype(np.float64)
    return torch.tensor(w, dtype=torch.float32).reshape(1, 1, size, 1)


def _inv_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class LiteFilter(nn.Module):
    """Per-location affine + per-location noise: ``clamp(x01·scale + shift + σ·z, 0, 1)``.

    Exactly what the fused kernel runs (pre with these maps, then post's clamp).
    σ = softplus(σ_raw) stays positive.

    The maps are learned on a ``map_size``×``map_size`` grid and upsampled
    bilinearly to the image size. A coarse grid (e.g. 16 for 64×64 faces) is the
    prior that matters: the secret lives in regions (mouth, cheeks, eyes), and a
    full-resolution map learns pixel patterns that fool the training adversary
    while a retrained attacker reads straight through them.

    Args:
        size: height = width of the maps.
        channels: 3.
        init_sigma: the initial noise standard deviation.
        map_size: the learned grid's side (default: ``size``, one parameter per pixel).
        lower_fill: the share of the rows, from the bottom, replaced by the training data's mean face
            (``scale`` 0, ``shift`` the mean face, σ 0 there; set by :meth:`set_input_norm`): the lite
            form of the U-Net's fill, which a per-location affine map can express exactly -- without the
            U-Net's per-face colour offset, which would need a reduction over the face. 0 turns it off.
        lower_fill_feather: the height of the ramp above the filled rows, as a share of the rows.
        lower_fill_with: ``"mean_face"`` (default) paints the filled rows with the training faces' mean
            face; ``"grey"`` with flat mid-grey (0.5), as the ``lower_mask`` baseline does. At the same
            rows a flat grey keeps more of the face descriptor's identities (docs/emotion-methods.md).
        learn_maps: ``False`` keeps the maps at the identity outside the fill (scale 1, shift 0, σ 0):
            the filter is the mean-face fill alone, deterministic, with nothing to train (``privsdk
            train`` then only estimates the mean face). Measured on SMILEsmileD, the learned maps buy
            less privacy per identity lost than a larger fill does (docs/emotion-methods.md).
    """

    def __init__(self, size: int = 64, channels: int = 3, init_sigma: float = 0.05,
                 map_size: Optional[int] = None, lower_fill: float = 0.0, lower_fill_feather: float = 0.1,
                 learn_maps: bool = True, lower_fill_with: str = "mean_face"):
        super().__init__()
        _check_lower_fill(lower_fill, lower_fill_feather)
        if lower_fill_with not in ("mean_face", "grey"):
            raise InputError(f"lower_fill_with is {lower_fill_with!r}; expected 'mean_face' or 'grey'")
        self.lower_fill_with = lower_fill_with
        if init_sigma <= 0:
            raise InputError(f"init_sigma is {init_sigma}; expected > 0")
        if not learn_maps and lower_fill <= 0:
            raise InputError("learn_maps is false and lower_fill is 0: that lite filter is the identity; "
                             "expected a lower_fill share > 0, or learn_maps true")
        self.size = int(size)
        self.map_size = int(map_size) if map_size is not None else self.size
        if not 1 <= self.map_size <= self.size:
            raise InputError(f"map_size is {map_size}; expected 1 ≤ map_size ≤ size ({self.size})")
        m = self.map_size
        self.noise_shape: Tuple[int, int, int] = (channels, self.size, self.size)
        self.learn_maps = bool(learn_maps)
        maps = {"scale": torch.ones(1, channels, m, m), "shift": torch.zeros(1, channels, m, m),
                # softplus(-inf) = 0: no noise at all when the maps are fixed
                "sigma_raw": torch.full((1, channels, m, m), _inv_softplus(init_sigma) if learn_maps else -math.inf)}
        for name, value in maps.items():
            # same names either way, so a checkpoint's state_dict loads into the filter its arch describes
            if self.learn_maps:
                setattr(self, name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)
        self.lower_fill = float(lower_fill)
        if self.lower_fill > 0:
            self.register_buffer("seen_rows", lower_fill_weights(self.size, self.lower_fill, float(lower_fill_feather)))
            self.register_buffer("fill_face", torch.full((1, channels, self.size, self.size), 0.5))

    def set_input_norm(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """The training faces' per-location mean (3×H×W, x01): the face the filled rows get (unless they are
        grey, ``lower_fill_with="grey"``); ``std`` unused."""
        if self.lower_fill > 0 and self.lower_fill_with == "mean_face":
            self.fill_face.copy_(torch.as_tensor(mean).reshape(self.fill_face.shape))

    def _full(self, grid: torch.Tensor) -> torch.Tensor:
        if self.map_size == self.size:
            return grid
        return F.interpolate(grid, size=(self.size, self.size), mode="bilinear", align_corners=False)

    def _seen(self, full: torch.Tensor, filled: float | torch.Tensor = 0.0) -> torch.Tensor:
        if self.lower_fill <= 0:
            return full
        return full * self.seen_rows + (1.0 - self.seen_rows) * filled

    def sigma(self) -> torch.Tensor:
        return self._seen(F.softplus(self._full(self.sigma_raw)))

    def _scale_shift(self) -> Tuple[torch.Tensor, torch.Tensor]:
        fill = self.fill_face if self.lower_fill > 0 else 0.0
        return self._seen(self._full(self.scale)), self._seen(self._full(self.shift), fill)

    def forward(self, image: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        scale, shift = self._scale_shift()
        return torch.clamp(image * scale + shift + self.sigma() * noise, 0.0, 1.0)

    @torch.no_grad()
    def maps(self) -> Dict[str, np.ndarray]:
        """The fused kernel's ``scale``, ``shift``, ``sigma`` maps, 3×H×W float32 numpy (full size)."""
        scale, shift = self._scale_shift()
        return {"scale": scale[0].detach().cpu().float().numpy().copy(),
                "shift": shift[0].detach().cpu().float().numpy().copy(),
                "sigma": self.sigma()[0].detach().cpu().float().numpy().copy()}


def build_filter(kind: str, **arch: Any) -> nn.Module:
    """Build a filter network: ``kind`` ``"unet"`` (:class:`StochasticUNet`) or ``"lite"`` (:class:`LiteFilter`).

    ``arch`` are the class's keyword arguments; they are stored in the checkpoint
    so that ``build_filter(ckpt["filter"]["kind"], **ckpt["filter"]["arch"])`` rebuilds it.
    """
    if kind == "unet":
        cls = StochasticUNet
    elif kind == "lite":
        cls = LiteFilter
    else:
        raise InputError(f"unknown filter kind {kind!r}; expected one of {list(FILTER_KINDS)}")
    try:
        return cls(**arch)
    except TypeError as exc:
        raise InputError(f"bad architecture arguments for a {kind!r} filter: {exc}; "
                         f"expected keywords of {cls.__name__}") from None


# ----------------------------------------------------------------------------- estimators

class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(y)) + self.skip(x))


class SmallResNet(nn.Module):
    """A small ResNet on x01 RGB images: classifier (``outputs`` logits) or regressor (``outputs`` values).

    Args:
        outputs: number of classes (logits) or of regression targets.
        width: channels of the first stage (stages have width, 2·width, 4·width).
        in_channels: input channels.
    """

    def __init__(self, outputs: int = 2, width: int = 16, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.stages = nn.Sequential(_ResBlock(width, width, 1), _ResBlock(width, 2 * width, 2),
                                    _ResBlock(2 * width, 4 * width, 2))
        self.fc = nn.Linear(4 * width, outputs)

    def features(self, x01: torch.Tensor) -> torch.Tensor:
        """Pooled features (N × 4·width)."""
        x = self.stages(self.stem((x01 - 0.5) * 4.0))
        return x.mean(dim=(2, 3))

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x01))


class CNNPlusLinear(SmallResNet):
    """:class:`SmallResNet` whose logits add a linear model on the raw pixels.

    As a training adversary it contains both attackers that ``privsdk eval`` retrains (a CNN
    and a linear model on pixels), so a filter cannot win by fooling only the CNN.

    Args:
        outputs: number of classes.
        width: channels of the CNN's first stage.
        size: input height = width (the linear branch has ``3·size²`` inputs).
    """

    def __init__(self, outputs: int = 2, width: int = 16, size: int = 64, in_channels: int = 3):
        super().__init__(outputs, width, in_channels)
        self.pixels = nn.Linear(in_channels * size * size, outputs)
        nn.init.zeros_(self.pixels.weight)  # starts as the plain CNN; the branch learns what the CNN misses
        nn.init.zeros_(self.pixels.bias)

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x01)) + self.pixels(((x01 - 0.5) * 4.0).flatten(1))


class ReconstructionDecoder(nn.Module):
    """Paper 004's adversary: reconstructs the raw image (x01) from the filtered one."""

    def __init__(self, width: int = 32, channels: int = 3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * width, width, 2, stride=2), nn.ReLU(inplace=True),
            nn.Conv2d(width, channels, 3, padding=1), nn.Sigmoid())

    def forward(self, y01: torch.Tensor) -> torch.Tensor:
        return self.net(y01)


class SecretGenerator(nn.Module):
    """Paper 002's generator: filtered image + a sampled secret s' (one-hot planes) + noise → image."""

    def __init__(self, size: int = 64, num_classes: int = 2, base: int = 16, depth: int = 3,
                 noise_channels: int = 8, norm: str = "batch"):
        super().__init__()
        self.num_classes = int(num_classes)
        self.unet = StochasticUNet(size=size, base=base, depth=depth, noise_channels=noise_channels, norm=norm,
                                   extra_channels=num_classes)
        self.noise_shape = self.unet.noise_shape

    def forward(self, y01: torch.Tensor, s_prime: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(s_prime.long(), self.num_classes).to(y01.dtype)
        planes = onehot[:, :, None, None].expand(-1, -1, y01.shape[2], y01.shape[3])
        return self.unet((y01 - 0.5) * 4.0, noise, extra=planes)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
