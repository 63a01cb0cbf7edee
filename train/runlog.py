"""Run logs: a CSV of per-epoch metrics, optional TensorBoard, and a PNG of the curves.

Example::

    from privsdk.train.runlog import RunLog
    rl = RunLog("runs/x")
    rl.write({"epoch": 1, "train_loss": 0.5, "val_attacker_bacc": 0.6})
    rl.plot("runs/x/curves.png")
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from privsdk.log import get_logger

log = get_logger(__name__)


class RunLog:
    """Appends one row per epoch to ``RUN_DIR/log.csv`` (and TensorBoard when importable)."""

    def __init__(self, run_dir: Union[str, os.PathLike], keep_until_epoch: Optional[int] = None,
                 tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "log.csv"
        self.rows: List[Dict[str, Any]] = []
        if self.path.is_file() and keep_until_epoch is not None:
            with open(self.path, newline="", encoding="utf-8") as fh:
                self.rows = [r for r in csv.DictReader(fh) if int(float(r["epoch"])) <= keep_until_epoch]
            self._rewrite()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            except Exception as exc:  # tensorboard not installed
                log.debug("TensorBoard logging off: %s", exc)

    def _rewrite(self) -> None:
        keys: List[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        tmp = self.path.with_name("log.csv.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            for r in self.rows:
                w.writerow(r)
        os.replace(tmp, self.path)

    def write(self, row: Dict[str, Any]) -> None:
        """Record one epoch's metrics."""
        self.rows.append(dict(row))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._rewrite()
        if self.tb is not None:
            step = int(row.get("step", row.get("epoch", 0)))
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                    self.tb.add_scalar(k, v, step)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()

    def plot(self, path: Union[str, os.PathLike]) -> Optional[Path]:
        """Draw train losses, validation accuracies and fidelity against epochs (matplotlib Agg)."""
        if not self.rows:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        def series(key: str) -> List[float]:
            out = []
            for r in self.rows:
                try:
                    out.append(float(r.get(key, "nan")))
                except (TypeError, ValueError):
                    out.append(math.nan)
            return out

        epochs = series("epoch")
        keys = list(self.rows[-1].keys())
        groups = [("training losses", [k for k in keys if k.startswith("train_")]),
                  ("validation accuracy / AUC", [k for k in keys if k.startswith("val_") and ("bacc" in k or "auc" in k)]),
                  ("validation fidelity / utility error",
                   [k for k in keys if k.startswith("val_") and "bacc" not in k and "auc" not in k and "psnr" not in k]),
                  ("validation PSNR (dB)", [k for k in keys if k == "val_psnr"])]
        groups = [g for g in groups if g[1]]
        fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4), squeeze=False)
        for ax, (title, ks) in zip(axes[0], groups):
            for k in ks:
                ax.plot(epochs, series(k), marker="o", label=k)
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
