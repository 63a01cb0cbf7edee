"""`privsdk eval --framing runtime`: a set's faces re-cut as `Filter` frames camera faces for a filter."""
import numpy as np
import pytest

from privsdk.errors import InputError
from privsdk.train.eval import read_report
from privsdk.train.eval.filters import FilterUnderEval, baseline
from privsdk.train.eval.framing import crop_and_resize, filters_face_box, frame_as_runtime, runtime_crop
from privsdk.train.eval.protocol import EvalData

FILTER_BOX = [0.1, 0.2, 0.9, 1.0]   # where "the filter's training faces" sit in the Haar box (test value)


def _boxed(name, box):
    return FilterUnderEval(name, lambda x: x, False, "bundle-lite", None, {"face_crop": {"box": box}})


def test_runtime_crop_maps_the_filters_box_into_each_images_fractions():
    # a set cropped exactly as the filter was trained: nothing to re-cut
    np.testing.assert_allclose(runtime_crop(FILTER_BOX, FILTER_BOX), [0, 0, 1, 1], atol=1e-12)
    # a set cropped at the Haar box itself (GENKI-4K): the filter's box, as fractions of the image
    np.testing.assert_allclose(runtime_crop([0, 0, 1, 1], FILTER_BOX), FILTER_BOX, atol=1e-12)
    # a set cropped twice as wide around the same centre: the crop is half as wide, centred the same
    np.testing.assert_allclose(runtime_crop([-0.5, -0.5, 1.5, 1.5], [0, 0, 1, 1]), [0.25, 0.25, 0.75, 0.75])
    with pytest.raises(InputError, match="right > left"):
        runtime_crop([0, 0, 1, 1], [0.5, 0, 0.4, 1])


def test_crop_and_resize_samples_the_crop_at_pixel_centres():
    pytest.importorskip("cv2")
    x = np.tile((np.arange(64) * 2).astype(np.uint8)[None, None, :, None], (2, 64, 1, 3))   # value = 2·column
    np.testing.assert_array_equal(crop_and_resize(x, (0, 0, 1, 1)), x)
    half = crop_and_resize(x, (0.25, 0.0, 0.75, 1.0)).astype(float)
    # output column u samples column 16 + (u + 0.5)/2 - 0.5 of the source
    expected = 2 * (16 + (np.arange(64) + 0.5) / 2 - 0.5)
    np.testing.assert_allclose(half[0, 10, :, 1], expected, atol=1.0)   # uint8 rounding, border replicated
    assert half.shape == x.shape


def test_filters_face_box_refuses_what_it_cannot_frame():
    box, owners = filters_face_box([_boxed("a", FILTER_BOX), baseline("blur", 2.0), _boxed("b", [0.11, 0.2, 0.9, 1.0])])
    np.testing.assert_allclose(box, [0.105, 0.2, 0.9, 1.0])
    assert owners == ["a", "b"]
    with pytest.raises(InputError, match="no filter under evaluation records"):
        filters_face_box([baseline("blur", 2.0)])
    with pytest.raises(InputError, match="frame faces differently"):
        filters_face_box([_boxed("a", FILTER_BOX), _boxed("b", [0.0, 0.0, 1.0, 1.0])])


@pytest.fixture(scope="module")
def astronaut_crops(astronaut_bgr):
    """Real face crops cut at the Haar box itself (GENKI-4K's framing) and, for comparison, the same faces cut
    at FILTER_BOX of it, over several scales and shifts of the astronaut portrait."""
    cv2 = pytest.importorskip("cv2")
    from privsdk.regions import make_finder

    loose, tight = [], []
    for scale in (0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3):
        frame = cv2.resize(astronaut_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        b = max(make_finder("faces", hold=0, crop=(0, 0, 1, 1)).find(frame), key=lambda r: r.w)
        for dx, dy in ((0, 0), (-0.03, 0.02), (0.03, -0.02), (0.02, 0.03), (-0.02, -0.03), (0.01, 0.0)):
            for box, out in (((0, 0, 1, 1), loose), (FILTER_BOX, tight)):
                x0, y0 = b.x + (box[0] + dx) * b.w, b.y + (box[1] + dy) * b.h
                side = (box[2] - box[0]) * b.w
                m = np.array([[side / 64, 0, x0], [0, side / 64, y0]])
                crop = cv2.warpAffine(frame, m, (64, 64), flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP)
                out.append(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
    return np.stack(loose), np.stack(tight)


def test_frame_as_runtime_recuts_loose_crops_like_the_filters_training_faces(astronaut_crops):
    loose, tight = astronaut_crops
    labels = {"smile": np.arange(len(loose)) % 2}
    data = EvalData.from_arrays("faces", loose, labels, "smile", fractions=(0.5, 0.25, 0.25))
    framed = frame_as_runtime(data, [_boxed("lite", FILTER_BOX), baseline("blur", 2.0)])
    info = framed.info["framing"]
    assert info["mode"] == "runtime" and info["from_filters"] == ["lite"]
    np.testing.assert_allclose(info["data_box"]["train"], [0, 0, 1, 1], atol=0.06)   # measured, not assumed
    np.testing.assert_allclose(info["crop"]["train"], FILTER_BOX, atol=0.06)
    idx = np.asarray(data.info["split"]["train"])
    before = np.abs(loose[idx].astype(float) - tight[idx]).mean()
    after = np.abs(framed.images["train"].astype(float) - tight[idx]).mean()
    assert after < 0.4 * before, (before, after)    # re-cut, the loose crops look like the tight ones
    assert framed.labels is data.labels and framed.images["test"].shape == data.images["test"].shape


def test_cli_framing_runtime_is_recorded_and_not_merged_with_own_crops(astronaut_crops, tmp_path, capsys):
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("privsdk.train.data", reason="privsdk.train.data not built yet")
    from privsdk.cli import main
    from privsdk.registry import resolve

    loose, _ = astronaut_crops
    rows = ["path,smile"]
    for i, face in enumerate(loose):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), face[..., ::-1])
        rows.append(f"{i:03d}.png,{i % 2}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    common = ["--data", f"csv={tmp_path / 'labels.csv'}", "--attackers", "linear", "--identity", "off", "--quick"]
    lite = f"lite={resolve('emotion-lite')}"
    assert main(["-q", "eval", "--filter", lite, *common, "--framing", "runtime", "--out", str(tmp_path / "rt")]) == 0
    assert "faces re-cut as Filter frames them" in capsys.readouterr().out
    framing = read_report(tmp_path / "rt")["data"]["framing"]
    assert framing["from_filters"] == ["lite"] and framing["crop"]["train"][1] > 0.1
    assert main(["-q", "eval", "--filter", "blur:2", *common, "--out", str(tmp_path / "own")]) == 0
    with pytest.raises(InputError, match="different data"):
        _run(["eval", "merge", "--report", str(tmp_path / "rt"), "--report", str(tmp_path / "own"),
              "--out", str(tmp_path / "m")])
    with pytest.raises(InputError, match="no filter under evaluation records"):
        _run(["eval", "--filter", "blur:2", *common, "--framing", "runtime", "--out", str(tmp_path / "x")])


def _run(argv):
    """The command's own exception (main() would turn it into exit status 1)."""
    from privsdk.cli import build_parser

    args = build_parser().parse_args(argv)
    return args._main(args)
