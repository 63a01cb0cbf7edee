"""`privsdk export BUNDLE --grey-lower SHARE`: the same filter, the bottom of every face flat grey in the post maps."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import privsdk
from privsdk.bundle import load_bundle
from privsdk.errors import InputError
from privsdk.export.grey_lower import grey_lower_bundle, grey_rows

_spec = importlib.util.spec_from_file_location("export_tiny_bundles_grey",
                                              Path(__file__).resolve().parents[1] / "fixtures" / "runtime" /
                                              "tiny_bundles.py")
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)


def test_grey_rows_are_the_rows_a_lite_fill_of_that_share_fills():
    assert grey_rows(64, 0.55).sum() == 35 and grey_rows(64, 0.55)[29] and not grey_rows(64, 0.55)[28]
    assert grey_rows(16, 0.5).tolist() == [False] * 8 + [True] * 8
    for bad in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(InputError, match="in \\(0, 1\\)"):
            grey_rows(16, bad)


@pytest.mark.parametrize("kind", ["unet", "lite"])
def test_the_bottom_rows_leave_grey_and_the_rest_as_before(kind, tmp_path, astronaut_bgr):
    import cv2

    write = tiny.write_unet if kind == "unet" else tiny.write_lite
    source = write(tmp_path / "src")
    out = grey_lower_bundle(source, tmp_path / "grey", 0.25, version="2.0.0")
    a, b = load_bundle(source), load_bundle(out)
    assert b.name == f"{a.name}-grey25" and b.manifest["version"] == "2.0.0"
    assert b.manifest["evaluation"] is None                                      # its report must be its own
    assert b.manifest["export"]["grey_lower"]["rows"] == 4 and "flat grey" in b.manifest["description"]
    for name in set(a.manifest["files"]) - {"norm.npz"}:                         # the network, byte for byte
        assert b.manifest["files"][name] == a.manifest["files"][name]
    face = np.ascontiguousarray(cv2.resize(astronaut_bgr[50:250, 160:360], tiny.HW[::-1]))
    before = privsdk.Filter(source, regions="full", seed=3).apply(face)
    after = privsdk.Filter(out, regions="full", seed=3).apply(face)
    assert (after[12:] == 128).all()
    np.testing.assert_array_equal(after[:12], before[:12])
    # greying a bundle that has post maps already composes with them
    again = load_bundle(grey_lower_bundle(out, tmp_path / "again", 0.5))
    assert (again.maps["post_scale"][:, 8:] == 0).all() and (again.maps["post_shift"][:, 8:] == 0.5).all()
    np.testing.assert_array_equal(again.maps["post_scale"][:, :8], b.maps["post_scale"][:, :8])


def test_cli_writes_it_and_refuses_what_it_cannot_do(tmp_path, capsys):
    from privsdk.cli import main

    source = tiny.write_unet(tmp_path / "src")
    assert main(["export", str(source), "--grey-lower", "0.5", "-o", str(tmp_path / "cli"), "--name", "g"]) == 0
    assert load_bundle(tmp_path / "cli").name == "g"
    assert main(["export", str(source), "--grey-lower", "0.5"]) == 1
    assert "--grey-lower takes a bundle and -o DIR" in capsys.readouterr().err
    assert main(["export", str(source), "--grey-lower", "0.5", "--level-head", "-o", str(tmp_path / "x")]) == 1
    assert "level and erase first, then grey" in capsys.readouterr().err
    assert main(["export", str(source), "--grey-lower", "1.2", "-o", str(tmp_path / "y")]) == 1
    assert "expected the share" in capsys.readouterr().err
    with pytest.raises(InputError, match="other than the source"):
        grey_lower_bundle(source, source, 0.5)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
