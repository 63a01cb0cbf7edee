"""privsdk.train.eval: the one evaluation protocol of privsdk (``privsdk eval``).

A filter under evaluation is a callable ``uint8 N×H×W×3 RGB → uint8 N×H×W×3 RGB``
with fresh noise per call (:mod:`.filters`: checkpoints, bundles, baselines).
:func:`evaluate` trains fresh attackers on its output (paper 003's verification
protocol), measures utility, and returns a JSON-ready report; :mod:`.bounds`
holds paper 000's bounds, :mod:`.pose_floor` the secret read from the head pose
alone (what a pose-keeping filter cannot hide), :mod:`.synthetic` paper 000's
Section 4 experiments.

Example::

    import numpy as np
    from privsdk.train.eval import EvalData, ProtocolSettings, baseline_sweep, evaluate, write_report
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (120, 32, 32, 3), dtype=np.uint8)
    smile = rng.integers(0, 2, 120); images[smile == 1, :8, :8] = 255
    data = EvalData.from_arrays("toy", images, {"smile": smile}, secret="smile")
    report = evaluate(baseline_sweep(["identity", "full_mask"], quick=True), data,
                      ProtocolSettings.quick_settings(attackers=("linear",), identity=False))
    write_report(report, "runs/eval-toy")
"""
from .bounds import lemma22_lower_bound, lemma23_achievable, mutual_information_nats, tradeoff_bounds
from .filters import (BASELINE_STRENGTHS, FilterUnderEval, baseline, baseline_sweep, bundle_filter,
                      checkpoint_filter, frame_mean, levelled, make_filter)
from .metrics import balanced_accuracy, classification_metrics, image_fidelity, roc_auc
from .pose_floor import head_geometry, level_heads, secret_from_pose
from .protocol import EvalData, Evaluator, ProtocolSettings, evaluate, stratified_split
from .report import read_report, write_report
from .training import TrainSettings, train_model
from .verification import LabelledFaces

__all__ = ["FilterUnderEval", "baseline", "baseline_sweep", "bundle_filter", "checkpoint_filter", "frame_mean", "levelled", "make_filter",
           "BASELINE_STRENGTHS", "EvalData", "Evaluator", "ProtocolSettings", "evaluate", "stratified_split",
           "TrainSettings", "train_model", "balanced_accuracy", "classification_metrics", "image_fidelity",
           "roc_auc", "lemma22_lower_bound", "lemma23_achievable", "mutual_information_nats", "tradeoff_bounds",
           "read_report", "write_report", "LabelledFaces", "head_geometry", "level_heads", "secret_from_pose"]
