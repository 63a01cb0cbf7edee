"""The one configuration of a training run: dataclasses, a YAML file and ``--set a.b=c`` overrides.

A config file holds any subset of the sections below; everything else takes
the defaults. ``--set`` values are parsed as YAML (``--set train.lr=1e-3``,
``--set data.utility=[yaw,pitch]``, ``--set method.params.kl_direction=code``).
The full resolved config is saved as ``RUN_DIR/config.yaml`` and inside every
checkpoint.

Example::

    from privsdk.train.config import load_config
    cfg = load_config("configs/smoke.yaml", overrides=["train.epochs=2", "filter.kind=lite"])
    print(cfg.method.name, cfg.train.epochs)
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from privsdk.errors import InputError

METHODS = ("aioi", "labelflip", "maxent", "filtergen", "advrec")


@dataclass
class DataConfig:
    """Which data set, how it is split, which labels are secret / utility."""

    name: str = "smilesmiled"
    root: str = "../shared/data/SMILEsmileD"
    size: int = 64
    secret: str = "smile"
    utility: List[str] = field(default_factory=list)
    fractions: List[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    split_seed: int = 0
    cache_dir: Optional[str] = None
    limit: Optional[int] = None
    # The share of each set's train split the filter is fit on (stratified, `privsdk.train.data.hold_back`); the rest
    # is held back, seen by no stage, for attackers with faces of their own (`privsdk eval --held-back-attacker`).
    train_share: Optional[float] = None
    # More sets trained on with the first, each {name, root} and optionally framing: runtime (its faces re-cut as the
    # first set's sit in the runtime's Haar box: as `Filter` cuts camera faces for the filter; default: its own crops).
    # Each is split on its own (same fractions and seed, as `privsdk eval` splits it) and only train/val parts are
    # joined, so every set's test split stays held out.
    also: List[Dict[str, str]] = field(default_factory=list)


@dataclass
class FilterConfig:
    """The filter network: ``kind`` unet or lite, and its ``build_filter`` arguments (size is added)."""

    kind: str = "unet"
    arch: Dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodConfig:
    """The training method and its hyper-parameters (see each module of ``privsdk.train.methods``)."""

    name: str = "aioi"
    params: Dict[str, Any] = field(default_factory=dict)


@dataclass
class LossConfig:
    """Terms usable with any method: distortion budget, pose keeping, identity keeping."""

    distortion_eps: Optional[float] = 0.01     # L2 budget per pixel (mean squared error of x01), None = off
    distortion_weight: float = 100.0           # mu in mu·max(mse − eps, 0)²
    # Extra budgets on horizontal bands of the face crop, each {rows: [top, bottom] as fractions of the height,
    # eps: MSE allowed in the band, weight}. A tight band over the eyes keeps what face descriptors read while the
    # image-wide budget leaves room where the secret is (mouth, cheeks): DESIGN "Keeping utility while training".
    region_budgets: List[Dict[str, Any]] = field(default_factory=list)
    # Weight of 1 − SSIM(y, x) (the evaluation's SSIM, always on, unlike the budgets): under its budget an
    # adversarial filter may change texture and colour for nothing; this makes every needless change cost.
    ssim_weight: float = 0.0
    pose_weight: float = 0.0                   # weight of ‖pose(y) − pose(x)‖² (frozen pose regressor)
    pose_model: Optional[str] = None           # path of a saved pose regressor; None = trained in-run if labels exist
    identity_weight: float = 0.0               # weight of ‖d(y) − d(x)‖² (frozen face descriptor)
    identity_model: Optional[str] = None       # face-descriptor network (x01 → N×D): TorchScript or torch.export .pt2


@dataclass
class TrainConfig:
    """Optimization and bookkeeping."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3                           # the filter's (a lite filter's per-pixel maps want ~1e-2)
    adversary_lr: float = 1e-3                 # attackers, decoders and the clean frozen models
    adversary_steps: int = 1
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"                # cosine | constant
    seed: int = 0
    amp: bool = True                           # used on CUDA only
    device: str = "auto"                       # auto | cpu | cuda | cuda:N
    estimator_width: int = 16
    # the secret adversary also gets a linear branch on the pixels: the eval's linear attacker is then a special
    # case of the model the filter is trained against (a CNN alone leaves linear directions intact)
    adversary_linear_branch: bool = False
    pretrain_epochs: int = 5                   # clean training of frozen utility / fixed-attacker models
    utility_models: Dict[str, str] = field(default_factory=dict)   # label -> path of a saved frozen model
    max_steps_per_epoch: Optional[int] = None
    warmup_steps: int = 0                      # first steps: the filter learns only to reproduce x (MSE)
    checkpoint_every: int = 1
    num_threads: Optional[int] = None


@dataclass
class RunConfig:
    """A whole run."""

    data: DataConfig = field(default_factory=DataConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> Dict[str, Any]:
        """A plain nested dict (YAML / checkpoint friendly)."""
        return copy.deepcopy(dataclasses.asdict(self))

    def validate(self) -> "RunConfig":
        """Check values; :class:`InputError` naming the bad key and what is expected."""
        if self.method.name not in METHODS:
            raise InputError(f"method.name is {self.method.name!r}; expected one of {list(METHODS)}")
        if self.filter.kind not in ("unet", "lite"):
            raise InputError(f"filter.kind is {self.filter.kind!r}; expected 'unet' or 'lite'")
        if self.data.size < 8:
            raise InputError(f"data.size is {self.data.size}; expected at least 8")
        if self.train.epochs < 1 or self.train.batch_size < 2:
            raise InputError(f"train.epochs={self.train.epochs}, train.batch_size={self.train.batch_size}; "
                             "expected epochs >= 1 and batch_size >= 2")
        if self.train.lr_schedule not in ("cosine", "constant"):
            raise InputError(f"train.lr_schedule is {self.train.lr_schedule!r}; expected 'cosine' or 'constant'")
        if self.data.secret in self.data.utility:
            raise InputError(f"data.secret {self.data.secret!r} is also in data.utility; expected distinct labels")
        if not self.losses.ssim_weight >= 0:
            raise InputError(f"losses.ssim_weight is {self.losses.ssim_weight}; expected a weight >= 0")
        self.losses.region_budgets = [_check_region_budget(i, b) for i, b in enumerate(self.losses.region_budgets)]
        self.data.also = [_check_extra_set(i, e) for i, e in enumerate(self.data.also or [])]
        return self


def _check_extra_set(i: int, entry: Any) -> Dict[str, str]:
    from .data import DATASET_NAMES

    where = f"data.also[{i}]"
    expected = (f"expected {{name: one of {list(DATASET_NAMES)}, root: its folder, optionally framing: data or "
                "runtime}")
    if not isinstance(entry, dict) or not {"name", "root"} <= set(entry) <= {"name", "root", "framing"}:
        raise InputError(f"{where} is {entry!r}; {expected}")
    if entry["name"] not in DATASET_NAMES or not str(entry["root"]) or entry.get("framing", "data") not in (
            "data", "runtime"):
        raise InputError(f"{where} is {entry!r}; {expected}")
    checked = {"name": str(entry["name"]), "root": str(entry["root"])}
    if entry.get("framing", "data") == "runtime":   # the default stays out, so older configs read as they were
        checked["framing"] = "runtime"
    return checked


def _check_region_budget(i: int, band: Any) -> Dict[str, Any]:
    where = f"losses.region_budgets[{i}]"
    expected = "expected {rows: [top, bottom] with 0 <= top < bottom <= 1, eps: >= 0, weight: >= 0}"
    if not isinstance(band, dict) or set(band) - {"rows", "eps", "weight"} or "rows" not in band or "eps" not in band:
        raise InputError(f"{where} is {band!r}; {expected}")
    rows = band["rows"]
    try:
        top, bottom = (float(r) for r in rows)
        eps, weight = float(band["eps"]), float(band.get("weight", 1e4))
    except (TypeError, ValueError):
        raise InputError(f"{where} is {band!r}; {expected}") from None
    if not (0.0 <= top < bottom <= 1.0) or eps < 0 or weight < 0:
        raise InputError(f"{where} is {band!r}; {expected}")
    return {"rows": [top, bottom], "eps": eps, "weight": weight}


def _from_dict(cls: type, data: Dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise InputError(f"config section {where or 'top level'} is a {type(data).__name__}; expected a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise InputError(f"unknown config key {where + '.' if where else ''}{key}; expected one of {sorted(fields)}")
        sub = _SECTIONS.get(key) if cls is RunConfig else None
        kwargs[key] = _from_dict(sub, value, key) if sub is not None else value
    return cls(**kwargs)


_SECTIONS = {"data": DataConfig, "filter": FilterConfig, "method": MethodConfig, "losses": LossConfig,
             "train": TrainConfig}


def config_from_dict(data: Dict[str, Any]) -> RunConfig:
    """Build a :class:`RunConfig` from a nested dict (unknown keys are errors)."""
    return _from_dict(RunConfig, data or {}, "").validate()


def apply_overrides(data: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """Apply ``a.b=c`` overrides (values parsed as YAML) to a nested dict, in place; returns it."""
    import yaml

    for item in overrides:
        if "=" not in item:
            raise InputError(f"override {item!r} has no '='; expected KEY.PATH=VALUE, e.g. train.lr=1e-3")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise InputError(f"override {item!r} has an empty key; expected KEY.PATH=VALUE")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise InputError(f"override {item!r}: value is not valid YAML ({exc})") from None
        node = data
        for p in parts[:-1]:
            if not isinstance(node.setdefault(p, {}), dict):
                raise InputError(f"override {item!r}: {p!r} is not a section")
            node = node[p]
        node[parts[-1]] = value
    return data


def load_config(path: Optional[Union[str, Path]] = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML config (or the defaults when ``path`` is None) and apply ``overrides``."""
    import yaml

    data: Dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"config file {path} does not exist; expected a YAML file (see configs/)")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"config file {path} is not valid YAML: {exc}") from None
    data = apply_overrides(data, overrides)
    # Numbers written like 1e-3 are strings to YAML 1.1; coerce float fields.
    cfg = config_from_dict(data)
    _coerce_numbers(cfg)
    return cfg


def _coerce_numbers(cfg: RunConfig) -> None:
    for section in (cfg.data, cfg.filter, cfg.method, cfg.losses, cfg.train):
        for f in dataclasses.fields(section):
            v = getattr(section, f.name)
            if isinstance(v, str) and f.type in ("float", "Optional[float]"):
                try:
                    setattr(section, f.name, float(v))
                except ValueError:
                    raise InputError(f"config {f.name} is {v!r}; expected a number") from None
        if section is cfg.method:
            for k, v in list(section.params.items()):
                if isinstance(v, str):
                    try:
                        section.params[k] = float(v)
                    except ValueError:
                        pass


def save_config(cfg: RunConfig, path: Union[str, Path]) -> Path:
    """Write the full config as YAML."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
    return path
