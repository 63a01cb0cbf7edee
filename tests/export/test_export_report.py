"""Export options: embedding evaluation reports (only of the same files) and parity-gated simplification."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from privsdk.bundle import load_bundle  # noqa: E402
from privsdk.cli import main as cli_main  # noqa: E402
from privsdk.errors import InputError  # noqa: E402
from privsdk.export.bundle_export import ExportOptions, export_filter  # noqa: E402
from privsdk.export.report import embed_report  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "export"


def _tiny():
    spec = importlib.util.spec_from_file_location("export_tiny_filters_report", FIXTURES / "tiny_filters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


tiny = _tiny()


@pytest.fixture(scope="module")
def unet_export(tmp_path_factory):
    module, ckpt = tiny.make_checkpoint("unet", seed=1)
    return module, ckpt, export_filter(module, ckpt, tmp_path_factory.mktemp("report") / "smile")


def _copy(bundle_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / bundle_dir.name
    shutil.copytree(bundle_dir, dst)
    return dst


def test_report_is_embedded_only_for_the_evaluated_files(unet_export, tmp_path):
    bundle_dir = _copy(unet_export[2].directory, tmp_path)
    before = {p.name: p.read_bytes() for p in bundle_dir.iterdir() if p.name != "filter.json"}
    files = json.loads((bundle_dir / "filter.json").read_text())["files"]
    report = {"filter": {"files": {"filter.onnx": files["filter.onnx"], "norm.npz": files["norm.npz"]}},
              "privacy": {"worst_balanced_accuracy": 0.61}}
    report_path = tmp_path / "eval.json"
    report_path.write_text(json.dumps(report))
    assert cli_main(["export", str(bundle_dir), "--report", str(report_path)]) == 0
    bundle = load_bundle(bundle_dir)
    assert bundle.manifest["evaluation"] == report
    assert {n: bundle.files[n] for n in before} == before  # no other file changed
    other = {"filter": {"files": {"filter.onnx": "a" * 64, "norm.npz": files["norm.npz"]}}}
    with pytest.raises(InputError, match="filter.onnx has SHA-256"):
        embed_report(bundle_dir, other, source="other.json")
    of_checkpoint = {"filter": {"files": {"filter.pt": "c" * 64}}}  # 'privsdk eval CHECKPOINT' reports
    with pytest.raises(InputError, match="filter.pt was evaluated but is not in the bundle"):
        embed_report(bundle_dir, of_checkpoint, source="ckpt-eval.json")
    report_path.write_text(json.dumps({"privacy": {}}))
    assert cli_main(["export", str(bundle_dir), "--report", str(report_path)]) == 1  # no file hashes at all
    assert load_bundle(bundle_dir).manifest["evaluation"] == report  # the embedded report is untouched


def test_export_with_report_of_a_previous_export(unet_export, tmp_path):
    module, ckpt, first = unet_export
    report = {"filter": {"files": dict(first.files)}, "n": 3}
    result = export_filter(module, ckpt, tmp_path / "b", ExportOptions(report=report))
    assert load_bundle(result.directory).manifest["evaluation"] == report
    # re-exporting the same checkpoint is byte-reproducible, so the first export's report still applies
    assert result.files["filter.onnx"] == first.files["filter.onnx"]
    assert result.files["norm.npz"] == first.files["norm.npz"]
    stale = {"filter": {"files": {"filter.onnx": first.files["filter.onnx"], "norm.npz": "b" * 64}}}
    with pytest.raises(InputError, match="norm.npz has SHA-256"):
        export_filter(module, ckpt, tmp_path / "c", ExportOptions(report=stale))
    assert not (tmp_path / "c").exists()  # nothing written on refusal


def test_a_report_of_weaker_attackers_is_embedded_with_a_warning(unet_export, tmp_path, caplog, monkeypatch):
    """A report whose attackers trained on a subset (``--limit``) or on the validation faces reads a weaker
    attacker than the protocol's (docs/design-changes.md #21): embedding it says so."""
    import logging

    from privsdk.export.report import fewer_training_faces

    bundle_dir = _copy(unet_export[2].directory, tmp_path)
    files = json.loads((bundle_dir / "filter.json").read_text())["files"]
    whole = {"filter": {"files": {"filter.onnx": files["filter.onnx"], "norm.npz": files["norm.npz"]}},
             "data": {"sizes": {"train": 9215, "val": 1975, "test": 1975}, "split": {"train": [0]}}}
    subset = {**whole, "data": {**whole["data"], "sizes": {"train": 2000}, "subset": {"train": [0]}}}
    held_out = {**whole, "data": {**whole["data"], "sizes": {"train": 1975}, "held_out": {"test": [0]}}}
    assert fewer_training_faces(whole) is None and fewer_training_faces({}) is None
    assert "2000 faces, a subset" in fewer_training_faces(subset)
    assert "1975 validation faces" in fewer_training_faces(held_out)
    for attackers, words in (("fit share", "a share of the train split"), ("held_back", "training held back")):
        share = {**whole, "data": {**whole["data"], "sizes": {"train": 4607},
                                   "train_share": {"share": 0.5, "attackers_trained_on": attackers}}}
        assert "4607" in fewer_training_faces(share) and words in fewer_training_faces(share)
    monkeypatch.setattr(logging.getLogger("privsdk"), "propagate", True)  # the CLI's configure() turns it off
    for report, warned in ((whole, False), (subset, True), (held_out, True)):
        caplog.clear()
        with caplog.at_level("WARNING", logger="privsdk"):
            embed_report(bundle_dir, report, source="eval.json")
        assert load_bundle(bundle_dir).manifest["evaluation"] == report
        warnings = {r.getMessage() for r in caplog.records if r.levelname == "WARNING"}
        assert bool(warnings) == warned, warnings
        assert all("weaker attacker" in w and "whole train split" in w for w in warnings)


def _scaled_graph(data: bytes, factor: float) -> bytes:
    """The same graph with its output multiplied by ``factor`` (a simplifier that broke the network)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(data)
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["pre_scale" if o == "filtered" else o for o in node.output]
    graph.initializer.append(numpy_helper.from_array(np.array(factor, np.float32), "scale_factor"))
    graph.node.append(helper.make_node("Mul", ["pre_scale", "scale_factor"], ["filtered"]))
    return model.SerializeToString()


@pytest.mark.parametrize("factor, applied", [(1.0, True), (1.05, False)])
def test_simplified_graph_kept_only_when_parity_holds(factor, applied, unet_export, tmp_path, monkeypatch):
    import onnx

    from privsdk.export import bundle_export

    module, ckpt, _ = unet_export
    monkeypatch.setattr(bundle_export, "simplify", lambda data: (_scaled_graph(data, factor), "test-simplifier"))
    # the legacy exporter is 20× faster; the gating logic under test does not depend on the exporter
    options = ExportOptions(simplify=True, exporter="torchscript")
    result = export_filter(module, ckpt, tmp_path / "s", options)
    info = result.manifest["export"]["simplify"]
    assert info["requested"] and info["tool"] == "test-simplifier" and info["applied"] is applied
    assert result.manifest["export"]["exporter"] == "torch.onnx.export(dynamo=False)"
    shipped = onnx.load(str(result.directory / "filter.onnx"))
    assert ("scale_factor" in {i.name for i in shipped.graph.initializer}) is applied
    if not applied:
        assert "disagree" in info["rejected"]  # and the unsimplified graph was kept
    assert result.manifest["export"]["checks"]["onnxruntime_vs_torch_max_abs"] <= 1e-4


def test_face_crop_is_measured_on_the_training_data_a_bundle_names(unet_export, lfw_faces, tmp_path):
    """'privsdk export BUNDLE --face-crop': reads the data named in the manifest, files stay byte-identical."""
    cv2 = pytest.importorskip("cv2")
    from privsdk.export.report import rewrite_manifest

    for i, face in enumerate(lfw_faces[:40]):
        folder = "positives/positives7" if i % 3 == 0 else "negatives/negatives7"
        path = tmp_path / "faces/SMILEs" / folder / f"{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), face)
    bundle_dir = _copy(unet_export[2].directory, tmp_path)

    def name_missing_data(manifest, bundle):
        manifest["training"] = {"config": {"data": {"name": "smilesmiled", "root": str(tmp_path / "nowhere")}}}

    rewrite_manifest(bundle_dir, name_missing_data, "test")
    assert cli_main(["export", str(bundle_dir), "--face-crop"]) == 1  # the data is not there: said, nothing written
    assert "face_crop" not in load_bundle(bundle_dir).manifest["input"]

    def name_data(manifest, bundle):
        manifest["training"] = {"config": {"data": {"name": "smilesmiled", "root": str(tmp_path / "faces"),
                                                    "size": 25, "secret": "smile"}}}

    rewrite_manifest(bundle_dir, name_data, "test")
    before = {p.name: p.read_bytes() for p in bundle_dir.iterdir() if p.name != "filter.json"}
    assert cli_main(["export", str(bundle_dir), "--face-crop"]) == 0
    bundle = load_bundle(bundle_dir)
    crop = bundle.manifest["input"]["face_crop"]
    assert crop["detector"] == "haar" and crop["faces_found"] >= 10 and crop["faces_tried"] == 28  # the train split
    np.testing.assert_allclose(crop["box"], [0.04, 0.02, 1.11, 1.09], atol=0.1)  # LFW crops: about the Haar box
    assert {n: bundle.files[n] for n in before} == before
