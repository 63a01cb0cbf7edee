"""privsdk.train.data: every layout read from tiny files made here, broken ones refused, splits, real sets."""
from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from privsdk.errors import InputError
from privsdk.train.data import load_dataset, make_splits, splits_from_json, splits_to_json


def _write(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def _grey(v, size=20):
    return np.full((size, size), v, np.uint8)


def _colour(bgr, size=20):
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = bgr
    return img


def test_smilesmiled_labels_from_folders_and_grey_to_rgb(tmp_path):
    for i in range(3):
        _write(tmp_path / "SMILEs/positives/positives7" / f"{i}.jpg", _grey(200))
    for i in range(5):
        _write(tmp_path / "SMILEs/negatives/negatives7" / f"{i + 10}.jpg", _grey(50))
    ds = load_dataset("smilesmiled", tmp_path, size=8)
    assert ds.images.shape == (8, 8, 8, 3) and ds.images.dtype == np.uint8
    assert ds.labels["smile"].tolist() == [0] * 5 + [1] * 3
    assert np.all(ds.images[..., 0] == ds.images[..., 2])  # grey replicated
    assert abs(int(ds.images[-1].mean()) - 200) <= 2 and abs(int(ds.images[0].mean()) - 50) <= 2
    assert ds.name == "smilesmiled" and ds.paths[0].endswith("10.jpg")


def test_genki4k_indexes_labels_by_file_number_and_skips_missing(tmp_path):
    (tmp_path / "labels.txt").write_text("1 0.1 0.2 0.3\n0 -0.1 -0.2 -0.3\n1 0.5 0.6 0.7\n0 0 0 0\n")
    _write(tmp_path / "files/file0001.jpg", _colour((0, 0, 255)))  # red in BGR
    _write(tmp_path / "files/file0003.jpg", _colour((255, 0, 0)))  # blue
    ds = load_dataset("genki4k", tmp_path, size=10)
    assert len(ds) == 2
    assert ds.labels["smile"].tolist() == [1, 1]
    np.testing.assert_allclose(ds.labels["yaw"], [0.1, 0.5], rtol=1e-6)
    np.testing.assert_allclose(ds.labels["roll"], [0.3, 0.7], rtol=1e-6)
    assert ds.labels["yaw"].dtype == np.float32
    assert ds.images[0, 5, 5, 0] > 200 and ds.images[0, 5, 5, 2] < 50  # RGB order: red first
    assert ds.images[1, 5, 5, 2] > 200


def test_celeba_attributes_partition_and_unknown_attribute(tmp_path):
    names = ["Smiling", "Male", "Eyeglasses"]
    rows = ["000001.jpg  1 -1 -1", "000002.jpg -1  1 -1", "000003.jpg  1  1  1"]
    (tmp_path / "list_attr_celeba.txt").write_text("3\n" + " ".join(names) + "\n" + "\n".join(rows) + "\n")
    (tmp_path / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n")
    for i in range(1, 4):
        _write(tmp_path / "img_align_celeba" / f"{i:06d}.jpg", _colour((i * 40, 0, 0), size=30))
    ds = load_dataset("celeba", tmp_path, size=16)
    assert ds.labels["Smiling"].tolist() == [1, 0, 1] and ds.labels["Male"].tolist() == [0, 1, 1]
    assert ds.labels["partition"].tolist() == [0, 1, 2]
    only = load_dataset("celeba", tmp_path, size=16, attributes=["Male"], limit=2)
    assert set(only.labels) == {"Male", "partition"} and len(only) == 2
    with pytest.raises(InputError, match="Wearing_Hat.*Smiling"):
        load_dataset("celeba", tmp_path, size=16, attributes=["Wearing_Hat"])


def test_identity_folder_and_csv(tmp_path):
    for person, n in (("Alice", 2), ("Bob", 3)):
        for i in range(n):
            _write(tmp_path / "people" / person / f"{i}.png", _grey(30 * (i + 1)))
    ds = load_dataset("identity-folder", tmp_path / "people", size=12)
    assert ds.labels["identity"].tolist() == [0, 0, 1, 1, 1]
    assert ds.classes["identity"] == ["Alice", "Bob"]
    csv = tmp_path / "set.csv"
    csv.write_text("path,smile,age\npeople/Alice/0.png,1,31.5\npeople/Bob/2.png,0,40\n")
    c = load_dataset("csv", csv, size=12)
    assert c.labels["smile"].tolist() == [1, 0] and c.labels["smile"].dtype == np.int64
    assert c.labels["age"].dtype == np.float32 and c.labels["age"][0] == pytest.approx(31.5)


def test_broken_sets_are_refused_with_the_path(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_dataset("smilesmiled", tmp_path / "nowhere", size=8)
    (tmp_path / "SMILEs/positives/positives7").mkdir(parents=True)
    with pytest.raises(InputError, match="negatives"):
        load_dataset("smilesmiled", tmp_path, size=8)
    _write(tmp_path / "SMILEs/negatives/negatives7/1.jpg", _grey(10))
    bad = tmp_path / "SMILEs/positives/positives7/2.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(InputError, match=r"cannot decode image .*2\.jpg"):
        load_dataset("smilesmiled", tmp_path, size=8)
    with pytest.raises(InputError, match="unknown data set"):
        load_dataset("mnist", tmp_path, size=8)
    (tmp_path / "g/files").mkdir(parents=True)
    with pytest.raises(InputError, match="labels.txt"):
        load_dataset("genki4k", tmp_path / "g", size=8)


def test_cache_is_reused_and_invalidated(tmp_path):
    for i in range(2):
        _write(tmp_path / "d/SMILEs/positives/positives7" / f"{i}.jpg", _grey(100))
        _write(tmp_path / "d/SMILEs/negatives/negatives7" / f"{i}.jpg", _grey(20))
    a = load_dataset("smilesmiled", tmp_path / "d", size=8, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    b = load_dataset("smilesmiled", tmp_path / "d", size=8, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(a.images, b.images)
    _write(tmp_path / "d/SMILEs/positives/positives7/0.jpg", _grey(250))  # changed file -> new key
    c = load_dataset("smilesmiled", tmp_path / "d", size=8, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    assert c.images[2].mean() > 200


def test_splits_are_deterministic_stratified_and_disjoint(tmp_path):
    from privsdk.train.data import FaceSet

    y = np.array([0] * 70 + [1] * 30)
    ds = FaceSet(np.zeros((100, 4, 4, 3), np.uint8), {"smile": y}, [str(i) for i in range(100)], "toy")
    s1 = make_splits(ds, stratify="smile", fractions=(0.7, 0.15, 0.15), seed=3)
    s2 = make_splits(ds, stratify="smile", fractions=(0.7, 0.15, 0.15), seed=3)
    s3 = make_splits(ds, stratify="smile", fractions=(0.7, 0.15, 0.15), seed=4)
    for k in s1:
        np.testing.assert_array_equal(s1[k], s2[k])
    assert not np.array_equal(s1["train"], s3["train"])
    allidx = np.concatenate(list(s1.values()))
    assert sorted(allidx.tolist()) == list(range(100))
    assert y[s1["train"]].mean() == pytest.approx(0.3, abs=0.02)
    assert y[s1["test"]].mean() == pytest.approx(0.3, abs=0.1)
    back = splits_from_json(splits_to_json(s1))
    np.testing.assert_array_equal(back["val"], s1["val"])
    with pytest.raises(InputError, match="unknown attribute 'gender'.*smile"):
        make_splits(ds, stratify="gender")
    with pytest.raises(InputError, match="fractions"):
        make_splits(ds, fractions=(0.5, 0.5, 0.5))


def test_a_train_share_holds_back_the_rest_of_the_train_split_stratified():
    """data.train_share: the filter is fit on a stratified share; the rest is held back, val and test untouched,
    and every stage fit after the run (config_splits) cuts the same faces."""
    from privsdk.train.data import FaceSet, config_splits, hold_back

    y = np.array([0] * 70 + [1] * 30)
    ds = FaceSet(np.zeros((100, 4, 4, 3), np.uint8), {"smile": y}, [str(i) for i in range(100)], "toy")
    splits = make_splits(ds, stratify="smile", seed=2)
    cut = hold_back(splits, y, 0.5, seed=2)
    # 49 + 21 training faces, each class halved (round half to even): 24 + 10 fit on, 25 + 11 held back
    assert (len(cut["train"]), y[cut["train"]].sum(), len(cut["held_back"]), y[cut["held_back"]].sum()) == (34, 10, 36, 11)
    np.testing.assert_array_equal(np.sort(np.concatenate([cut["train"], cut["held_back"]])), splits["train"])
    for k in ("val", "test"):
        np.testing.assert_array_equal(cut[k], splits[k])
    again = config_splits(ds, {"secret": "smile", "split_seed": 2, "train_share": 0.5})
    np.testing.assert_array_equal(again["held_back"], cut["held_back"])
    assert not np.array_equal(hold_back(splits, y, 0.5, seed=3)["train"], cut["train"])
    assert hold_back(splits, y, None) == splits and "held_back" not in config_splits(ds, {})
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(InputError, match="expected a share of the train split"):
            hold_back(splits, y, bad)
    with pytest.raises(InputError, match="expected some of each"):
        hold_back(splits, y, 0.001)


def test_joined_sets_keep_each_sets_own_test_split(tmp_path):
    from privsdk.train.data import FaceSet, join_datasets

    rng = np.random.default_rng(0)
    a = FaceSet(rng.integers(0, 255, (40, 6, 6, 3), dtype=np.uint8), {"smile": np.arange(40) % 3 == 0},
                [f"a{i}" for i in range(40)], "smilesmiled")
    a.labels["smile"] = a.labels["smile"].astype(np.int64)
    b = FaceSet(rng.integers(0, 255, (20, 6, 6, 3), dtype=np.uint8),
                {"smile": (np.arange(20) % 2).astype(np.int64), "yaw": np.linspace(-1, 1, 20).astype(np.float32)},
                [f"b{i}" for i in range(20)], "genki4k")
    sa, sb = make_splits(a, stratify="smile", seed=0), make_splits(b, stratify="smile", seed=0)
    ds, sp = join_datasets([(a, sa), (b, sb)])
    assert ds.name == "smilesmiled+genki4k" and len(ds) == 60 and sorted(ds.labels) == ["smile"]
    np.testing.assert_array_equal(ds.images[40:], b.images)
    for k in ("train", "val", "test"):
        np.testing.assert_array_equal(sp[k], np.concatenate([sa[k], sb[k] + 40]))
    # the second set's held-out faces are exactly the ones `privsdk eval` tests on, and never trained on
    assert set(sp["test"][sp["test"] >= 40] - 40) == set(sb["test"].tolist())
    assert not set(sp["train"]) & set(sp["test"])
    assert [ds.paths[i] for i in sp["test"][sp["test"] >= 40]] == [b.paths[i] for i in sb["test"]]
    small = FaceSet(np.zeros((4, 5, 5, 3), np.uint8), {"smile": np.zeros(4, np.int64)}, ["s"] * 4, "small")
    with pytest.raises(InputError, match=r"'small' has images of shape \(5, 5, 3\); expected \(6, 6, 3\)"):
        join_datasets([(a, sa), (small, make_splits(small))])
    floaty = FaceSet(np.zeros((4, 6, 6, 3), np.uint8), {"smile": np.zeros(4, np.float32)}, ["f"] * 4, "floaty")
    with pytest.raises(InputError, match="label 'smile' is a class label in one set and a value"):
        join_datasets([(a, sa), (floaty, make_splits(floaty))])
    with pytest.raises(InputError, match="no data sets"):
        join_datasets([])


@pytest.mark.shared_data
def test_real_sets_counts(shared_data):
    smile = load_dataset("smilesmiled", shared_data / "SMILEsmileD", size=32)
    assert len(smile) == 13165 and smile.images.shape == (13165, 32, 32, 3)
    assert smile.labels["smile"].mean() == pytest.approx(0.28, abs=0.01)
    genki = load_dataset("genki4k", shared_data / "GENKI4K", size=32)
    assert len(genki) == 2800
    assert set(genki.labels) == {"smile", "yaw", "pitch", "roll"}
    assert np.abs(genki.labels["yaw"]).max() < 3.2
