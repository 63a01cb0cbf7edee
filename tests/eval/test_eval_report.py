"""A whole report: protocol, data, versions, bounds; it round-trips through JSON; the plot is drawn."""
import json
import logging

import numpy as np
import pytest

from privsdk.errors import InputError
from privsdk.train.eval import EvalData, ProtocolSettings, baseline, evaluate, read_report, write_report
from privsdk.train.eval.plot import plot_examples, plot_tradeoff
from privsdk.train.eval.report import jsonable, summary_table, unsaturated_models


@pytest.fixture(scope="module")
def report(lfw_faces):
    faces = np.repeat(lfw_faces[..., None], 3, axis=3).copy()
    secret = (np.arange(len(faces)) % 2).astype(np.int64)
    faces[secret == 1, 2:9, 2:9] = 255
    rng = np.random.default_rng(1)
    yaw = (rng.normal(0, 0.3, len(faces)) + 0.2 * secret).astype(np.float32)   # utility tied to the secret
    data = EvalData.from_arrays("lfw-square", faces, {"smile": secret, "yaw": yaw}, secret="smile")
    settings = ProtocolSettings.quick_settings(attackers=("linear",), identity=False, progress=False)
    settings.train.max_epochs = 4
    return evaluate([baseline("identity"), baseline("noise", 64.0, seed=0)], data, settings)


def test_report_round_trips(report, tmp_path):
    path = write_report(report, tmp_path / "run")
    assert path.name == "report.json"
    back = read_report(tmp_path / "run")
    assert back == jsonable(report)
    assert read_report(path)["results"][1]["filter"]["name"] == "noise:64"
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


def test_report_contents(report):
    assert report["format"] == "privsdk-eval-report/1"
    assert report["protocol"]["settings"]["attackers"] == ["linear"]
    assert report["protocol"]["settings"]["seed"] == 0
    assert report["versions"]["torch"] and report["versions"]["numpy"]
    import torch

    assert report["versions"]["torch_threads"] == torch.get_num_threads()
    assert report["data"]["sizes"] == {"train": 60, "val": 20, "test": 20}
    assert len(report["data"]["split"]["test"]) == 20
    assert report["chance"]["balanced_accuracy"] == 0.5 and report["chance"]["majority_rate"] == 0.5
    assert report["filter"]["name"] == "identity"
    ident, noisy = report["results"]
    assert noisy["filter"]["stochastic"] is True
    assert noisy["utility"]["fidelity"]["psnr_db"] < ident["utility"]["fidelity"]["psnr_db"]
    b = report["bounds"]
    assert b["utility_label"] == "yaw_tercile" and b["units"] == "nats"
    assert np.sum(b["table"]) == 60 and b["lower"][0] == pytest.approx(b["I_US"])
    t = ident["tradeoff_nats"]
    assert t["I_SY_lower_nats"] == pytest.approx(ident["privacy"]["leakage_bits"] * np.log(2))
    assert t["I_UX_given_Y_upper_nats"] >= 0
    assert "(clean)" in summary_table(report)


def test_models_stopped_by_the_epoch_cap_are_named(lfw_faces, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("privsdk"), "propagate", True)  # the CLI's configure() turns it off
    faces = np.repeat(lfw_faces[..., None], 3, axis=3).copy()
    secret = (np.arange(len(faces)) % 2).astype(np.int64)
    data = EvalData.from_arrays("lfw", faces, {"smile": secret}, secret="smile")
    settings = ProtocolSettings.quick_settings(attackers=("linear",), identity=False, progress=False)
    settings.train.max_epochs = 1          # patience 2 can never stop a one-epoch run early
    with caplog.at_level("WARNING", logger="privsdk"):
        capped = evaluate([baseline("blur", 2.0)], data, settings)
    assert capped["unsaturated_models"] == ["clean/attackers/linear/training",
                                            "results[blur:2]/privacy/attackers/linear/training"]
    assert "1-epoch cap" in summary_table(capped) and "results[blur:2]" in summary_table(capped)
    assert any("2 model(s) stopped at the 1-epoch cap" in r.getMessage() for r in caplog.records)


def test_saturated_models_are_not_named():
    saturated = {"epochs_used": 7, "best_epoch": 4, "stopped_early": True}
    report = {"clean": {"attackers": {"cnn": {"training": saturated}}, "pose_training": dict(saturated)},
              "results": [{"filter": {"name": "emotion"}, "privacy": {"attackers": {"cnn": {"training": saturated}}}},
                          {"privacy": {"attackers": {"cnn": {"training": {**saturated, "stopped_early": False}}}}}]}
    assert unsaturated_models(report) == ["results[1]/privacy/attackers/cnn/training"]
    report["results"].pop()
    assert unsaturated_models(report) == []
    assert "not saturated" not in summary_table({**report, "results": []})


def test_plot_is_written(report, tmp_path):
    png = plot_tradeoff(report, tmp_path / "tradeoff.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    with pytest.raises(InputError, match="utility axis"):
        plot_tradeoff(report, tmp_path / "x.png", utility="speed")


def test_a_curve_is_joined_in_its_budgets_order_not_its_privacys():
    """A filter's curve over the share of its change kept goes 0 → 0.25 → 0.5 → 1 even where privacy moves
    back and forth within the attackers' spread; points without a numeric label are joined left to right."""
    from privsdk.train.eval.plot import curve_order

    pts = [(0.524, 0.81, "1"), (0.599, 0.925, "0"), (0.528, 0.915, "0.5 (0.10.0)"), (0.566, 0.92, "0.25")]
    assert [p[2] for p in sorted(pts, key=curve_order(pts))] == ["0", "0.25", "0.5 (0.10.0)", "1"]
    mixed = pts + [(0.51, 0.7, "aioi")]
    assert [p[0] for p in sorted(mixed, key=curve_order(mixed))] == sorted(p[0] for p in mixed)


def test_examples_grid_shows_both_classes_before_and_after(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    labels = np.array([0] * 9 + [1] * 3)
    calls = []

    class Spy:  # an identity filter that records the faces it was shown
        name = "spy"

        def __call__(self, batch):
            calls.append(batch.copy())
            return batch

    png = plot_examples([baseline("full_mask", 1.0), Spy()], images, tmp_path / "ex.png", labels=labels, count=6)
    grid = cv2.imread(str(png))
    assert grid is not None and grid.shape[0] > grid.shape[1] * 0.3  # three rows of six faces
    # the faces shown alternate between the classes while both have faces left: 0, 1, 0, 1, 0, 1
    shown = calls[0]
    idx = [int(np.flatnonzero((images == f).all(axis=(1, 2, 3)))[0]) for f in shown]
    assert [int(labels[i]) for i in idx] == [0, 1, 0, 1, 0, 1]
    with pytest.raises(InputError, match="examples"):
        plot_examples([], images.astype(np.float32), tmp_path / "bad.png")


def test_read_report_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_report(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_report(tmp_path / "bad.json")


def test_a_bundle_reads_as_the_report_embedded_in_its_manifest(tmp_path):
    """`eval merge --report BUNDLE` draws a shipped filter from the report its manifest carries."""
    import shutil

    from privsdk.errors import BundleError
    from privsdk.registry import resolve

    bundle = resolve("emotion-lite")
    report = read_report(bundle)
    assert report == json.loads((bundle / "filter.json").read_text())["evaluation"]
    assert report["results"][0]["filter"]["name"] == "emotion-lite"
    # its manifest, or the bundle zipped, reads the same
    assert read_report(bundle / "filter.json") == report
    zipped = shutil.make_archive(str(tmp_path / "emotion-lite"), "zip", bundle)
    assert read_report(zipped) == report
    # a bundle whose files no longer match its manifest is refused, as the runtime refuses it
    tampered = shutil.copytree(bundle, tmp_path / "tampered")
    with open(tampered / "norm.npz", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="SHA-256"):
        read_report(tampered)
    # a manifest without a report is refused with a reason
    bare = shutil.copytree(bundle, tmp_path / "bare")
    manifest = json.loads((bare / "filter.json").read_text())
    del manifest["evaluation"]
    (bare / "filter.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="embeds no evaluation report"):
        read_report(bare)
    # a report.json beside the manifest wins: the directory is an eval output, not a bundle
    write_report(report, bare)
    assert read_report(bare) == report
    # a file that is neither JSON nor a zip says what was expected
    (tmp_path / "bundle.tar").write_bytes(b"\xc0\xff binary")
    with pytest.raises(InputError, match="filter bundle"):
        read_report(tmp_path / "bundle.tar")


def test_headline_is_derived_from_the_primary_filter_result() -> None:
    from privsdk.train.eval.report import headline

    def result(name: str, bacc: float) -> dict:
        return {"filter": {"name": name},
                "privacy": {"worst_attacker": {"arch": "cnn", "balanced_accuracy": bacc, "auc": bacc + 0.1},
                            "leakage_bits": 0.2,
                            "fixed_attackers": {"cnn": {"balanced_accuracy": 0.55}, "linear": {"balanced_accuracy": 0.6}}},
                "utility": {"fidelity": {"ssim": 0.8, "psnr_db": 27.0},
                            "identity": {"share_within_0.6": 0.93}}}

    report = {"filter": {"name": "mine"}, "data": {"name": "smilesmiled"},
              "chance": {"balanced_accuracy": 0.5}, "clean": {"worst_attacker": {"balanced_accuracy": 0.88}},
              "results": [result("blur:4", 0.8), result("mine", 0.61)]}
    h = headline(report)
    assert h["retrained_attacker_balanced_accuracy"] == 0.61
    assert h["fixed_attacker_balanced_accuracy"] == 0.6  # the stronger fixed attacker counts
    assert h["clean_attacker_balanced_accuracy"] == 0.88 and h["chance_balanced_accuracy"] == 0.5
    assert h["identity_kept_share"] == 0.93 and "pose_mae_ratio" not in h
    assert headline({"filter": {"name": "absent"}, "results": [result("mine", 0.6)]}) == {}
