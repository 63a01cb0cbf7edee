"""`privsdk eval` end to end on a tiny CSV data set of real faces (train → report.json + tradeoff.png)."""
import numpy as np
import pytest

from privsdk.cli import main
from privsdk.train.eval import read_report


@pytest.fixture(scope="module")
def csv_set(lfw_faces, tmp_path_factory):
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("privsdk.train.data", reason="privsdk.train.data not built yet")
    root = tmp_path_factory.mktemp("faces")
    rows = ["path,smile"]
    for i, face in enumerate(lfw_faces[:80]):
        img = np.repeat(face[..., None], 3, axis=2).copy()
        if i % 2:
            img[2:9, 2:9] = 255                      # the visible "secret"
        cv2.imwrite(str(root / f"{i:03d}.png"), img)
        rows.append(f"{i:03d}.png,{i % 2}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def test_cli_writes_report_and_plot(csv_set, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["-q", "eval", "--filter", "identity", "--filter", "full_mask:1", "--data", f"csv={csv_set}",
               "--size", "24", "--attackers", "linear", "--identity", "off", "--quick", "--restarts", "2",
               "--out", str(out)])
    assert rc == 0
    report = read_report(out)
    assert report["protocol"]["settings"]["restarts"] == 2
    assert all(len(r["privacy"]["attackers"]["linear"]["restarts"]) == 2 for r in report["results"])
    assert (out / "tradeoff.png").stat().st_size > 10_000
    # the originals and one row per filter: 3 rows of faces
    examples = pytest.importorskip("cv2").imread(str(out / "examples.png"))
    assert examples is not None and examples.shape[0] > 2 * 110
    names = [r["filter"]["name"] for r in report["results"]]
    assert names == ["identity", "full_mask:1"]
    ident, blank = (r["privacy"]["worst_attacker"]["balanced_accuracy"] for r in report["results"])
    assert ident > 0.8 and blank == pytest.approx(0.5)
    assert report["data"]["sizes"]["train"] == 56 and report["data"]["split_seed"] == 0
    printed = capsys.readouterr().out
    assert "full_mask:1" in printed and "(chance)" in printed


def test_cli_average_frames_scores_stochastic_filters_as_a_mean_of_frames(csv_set, tmp_path):
    out = tmp_path / "eval"
    assert main(["-q", "eval", "--filter", "noise:64", "--filter", "blur:2", "--data", f"csv={csv_set}", "--size",
                 "24", "--attackers", "logistic", "--identity", "off", "--quick", "--average-frames", "4",
                 "--out", str(out)]) == 0
    results = {r["filter"]["name"]: r for r in read_report(out)["results"]}
    assert sorted(results) == ["blur:2", "noise:64 (mean of 4 frames)"]
    assert results["noise:64 (mean of 4 frames)"]["filter"]["frames_averaged"] == 4


def test_cli_held_out_attacker_trains_on_the_val_split(csv_set, tmp_path):
    out = tmp_path / "eval"
    assert main(["-q", "eval", "--filter", "identity", "--data", f"csv={csv_set}", "--size", "24", "--attackers",
                 "linear", "--identity", "off", "--quick", "--held-out-attacker", "--out", str(out)]) == 0
    data = read_report(out)["data"]
    assert data["sizes"] == {"train": 12, "val": 6, "test": 6}             # 80 faces: val 12, test halved
    assert "val split" in data["held_out"]["attackers_trained_on"]


def test_cli_train_share_and_held_back_attacker_split_the_train_split_between_them(csv_set, tmp_path):
    """--train-share: the attackers train on the share a filter with data.train_share was fit on;
    --held-back-attacker: on the rest. val and test are the protocol's in both."""
    reports = {}
    for extra in ([], ["--held-back-attacker"]):
        out = tmp_path / f"eval{len(extra)}"
        assert main(["-q", "eval", "--filter", "identity", "--data", f"csv={csv_set}", "--size", "24", "--attackers",
                     "linear", "--identity", "off", "--max-epochs", "2", "--restarts", "1", "--train-share", "0.5",
                     *extra, "--out", str(out)]) == 0
        reports[len(extra)] = read_report(out)["data"]
    fit, held = reports[0], reports[1]
    assert fit["sizes"] == held["sizes"] == {"train": 28, "val": 12, "test": 12}   # 56 training faces, halved
    assert not set(fit["split"]["train"]) & set(held["split"]["train"])
    assert len(set(fit["split"]["train"]) | set(held["split"]["train"])) == 56
    assert fit["split"]["test"] == held["split"]["test"] and fit["split"]["val"] == held["split"]["val"]
    assert fit["train_share"]["attackers_trained_on"] == "fit share"
    assert held["train_share"] == {"share": 0.5, "split": "train", "attackers_trained_on": "held_back"}


@pytest.mark.parametrize("argv, message", [
    (["--filter", "blur:2"], "--data NAME=PATH is required"),
    (["--data", "csv=x.csv"], "nothing to evaluate"),
    (["--baselines", "sharpen", "--data", "csv=x.csv"], "unknown kind"),
    (["--filter", "sharpen:3", "--data", "csv=x.csv"], "not an existing checkpoint or bundle"),
    (["--filter", "blur:2", "--data", "csv=x.csv", "--restarts", "0"], "at least 1 run per attacker"),
    (["--filter", "noise:32", "--data", "csv=x.csv", "--average-frames", "0"], "at least 1 frame"),
    (["--filter", "blur:2", "--data", "csv=x.csv", "--held-back-attacker"], "expected --train-share S"),
    (["--filter", "blur:2", "--data", "csv=x.csv", "--held-back-attacker", "--train-share", "0.5", "--limit", "9"],
     "without --held-out-attacker, --limit and --quick"),
])
def test_cli_says_what_is_missing(argv, message, tmp_path):
    from privsdk.cli import build_parser
    from privsdk.errors import InputError

    args = build_parser().parse_args(["eval", *argv, "--out", str(tmp_path)])
    with pytest.raises(InputError, match=message):
        args._main(args)


def test_cli_cross_set_trains_on_one_set_and_tests_on_the_other(csv_set, tmp_path):
    """--test-data: attackers learn on --data's filtered images and are scored on the other set's test split.
    The second set labels the same visible mark the other way round, so an attacker that learned the mark
    from the first set scores far *below* chance there (and far above it had it been tested on the first)."""
    flipped = tmp_path / "flipped"
    flipped.mkdir()
    rows = csv_set.read_text().splitlines()
    out_rows = [rows[0]]
    for row in rows[1:]:
        name, smile = row.split(",")
        (flipped / name).write_bytes((csv_set.parent / name).read_bytes())
        out_rows.append(f"{name},{1 - int(smile)}")
    (flipped / "labels.csv").write_text("\n".join(out_rows) + "\n")

    out = tmp_path / "eval"
    rc = main(["-q", "eval", "--filter", "identity", "--data", f"csv={csv_set}",
               "--test-data", f"csv={flipped / 'labels.csv'}", "--size", "24", "--attackers", "linear",
               "--identity", "off", "--quick", "--out", str(out)])
    assert rc == 0
    report = read_report(out)
    data = report["data"]
    assert data["name"] == "csv->csv" and data["roots"] == {"train": f"csv={csv_set}",
                                                           "test": f"csv={flipped / 'labels.csv'}"}
    acc = report["results"][0]["privacy"]["worst_attacker"]["balanced_accuracy"]
    retrained = report["results"][0]["privacy"]["attackers"]
    assert all(a["balanced_accuracy"] < 0.2 for a in retrained.values()), retrained
    assert acc < 0.2


def test_cli_merge_joins_runs_on_the_same_data(csv_set, tmp_path, capsys):
    """Two runs on the same data merge into one report (every result, the stronger clean attacker) and plot;
    a NAME=PATH filter keeps its name; a run on another split or a filter measured twice is refused."""
    from privsdk.errors import InputError
    from privsdk.registry import resolve

    common = ["--data", f"csv={csv_set}", "--size", "24", "--attackers", "linear", "--identity", "off", "--quick"]
    assert main(["-q", "eval", "--filter", "full_mask:1", *common, "--out", str(tmp_path / "a")]) == 0
    assert main(["-q", "eval", "--filter", f"lite:v1={resolve('emotion-lite')}", *common,
                 "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    out = tmp_path / "merged"
    assert main(["-q", "eval", "merge", "--report", str(tmp_path / "a"),
                 "--report", str(tmp_path / "b" / "report.json"), "--out", str(out)]) == 0
    merged = read_report(out)
    assert [r["filter"]["name"] for r in merged["results"]] == ["full_mask:1", "lite:v1"]
    assert [m["filters"] for m in merged["merged_from"]] == [["full_mask:1"], ["lite:v1"]]
    cleans = [read_report(tmp_path / d)["clean"]["worst_attacker"]["balanced_accuracy"] for d in "ab"]
    assert merged["clean"]["worst_attacker"]["balanced_accuracy"] == max(cleans)
    assert (out / "tradeoff.png").stat().st_size > 10_000
    assert "lite:v1" in capsys.readouterr().out

    with pytest.raises(InputError, match="in both"):
        _merge_args(tmp_path / "a", tmp_path / "a", tmp_path)
    # --replace: a filter measured again keeps the later run's numbers, and the merged report says so
    assert main(["-q", "eval", "--filter", "full_mask:1", "--filter", "identity", *common, "--seed", "1",
                 "--out", str(tmp_path / "a2")]) == 0
    assert main(["-q", "eval", "merge", "--report", str(tmp_path / "a"), "--report", str(tmp_path / "b"),
                 "--report", str(tmp_path / "a2"), "--replace", "--out", str(tmp_path / "replaced")]) == 0
    replaced = read_report(tmp_path / "replaced")
    by_name = {r["filter"]["name"]: r for r in replaced["results"]}
    assert sorted(by_name) == ["full_mask:1", "identity", "lite:v1"] and len(replaced["results"]) == 3
    first, again = read_report(tmp_path / "a")["results"][0], read_report(tmp_path / "a2")["results"][0]
    assert first != again and by_name["full_mask:1"] == again  # (timings at least differ between the runs)
    assert replaced["merged_from"][0]["replaced"] == ["full_mask:1"]
    assert "replaced" not in replaced["merged_from"][2]
    # the same run twice is fine once one copy is renamed; a rename that matches nothing is refused
    assert main(["-q", "eval", "merge", "--report", str(tmp_path / "a"), "--report", str(tmp_path / "b"),
                 "--rename", "lite:v1=emotion-lite (bundled)", "--out", str(tmp_path / "renamed")]) == 0
    renamed = read_report(tmp_path / "renamed")["results"][1]["filter"]
    assert renamed["name"] == "emotion-lite (bundled)" and renamed["renamed_from"] == "lite:v1"
    assert read_report(tmp_path / "b")["results"][0]["filter"]["name"] == "lite:v1"  # the source is untouched
    with pytest.raises(InputError, match="matched no filter"):
        _merge_args(tmp_path / "a", tmp_path / "b", tmp_path, "--rename", "nope=x")
    with pytest.raises(SystemExit):
        _merge_args(tmp_path / "a", tmp_path / "b", tmp_path, "--rename", "no-equals-sign")
    assert main(["-q", "eval", "--filter", "identity", *common, "--split-seed", "1", "--out", str(tmp_path / "c")]) == 0
    with pytest.raises(InputError, match="different data"):
        _merge_args(tmp_path / "a", tmp_path / "c", tmp_path)


def test_cli_merge_over_seeds_keeps_each_attackers_worst_seed(csv_set, tmp_path, capsys):
    """`eval merge --over-seeds`: the same filters at attacker seeds 0 and 1 give one report in which every
    attacker (retrained, clean-trained, clean) is its highest reading of the two, both seeds listed beside it;
    reports at one seed or of other filters are refused; --rename and --only pick one filter out of
    runs that measured it beside others. `eval --seeds` runs the seeds itself."""
    from privsdk.cli import build_parser
    from privsdk.errors import InputError

    common = ["--data", f"csv={csv_set}", "--size", "24", "--attackers", "linear,logistic", "--identity", "off",
              "--quick", "--restarts", "2", "--filter", "identity", "--filter", "pixelate:12"]
    for seed in (0, 1):
        assert main(["-q", "eval", *common, "--seed", str(seed), "--out", str(tmp_path / f"s{seed}")]) == 0
    capsys.readouterr()
    assert main(["-q", "eval", "merge", "--over-seeds", "--report", str(tmp_path / "s0"),
                 "--report", str(tmp_path / "s1"), "--out", str(tmp_path / "seeds")]) == 0
    assert "(kept at seeds 0/1: " in capsys.readouterr().out
    merged, runs = read_report(tmp_path / "seeds"), [read_report(tmp_path / f"s{s}") for s in (0, 1)]
    assert merged["over_seeds"] == [0, 1]
    assert [r["filter"]["name"] for r in merged["results"]] == ["identity", "pixelate:12"]
    differs = False
    for i, result in enumerate(merged["results"]):
        for section in ("attackers", "fixed_attackers"):
            for arch, got in result["privacy"][section].items():
                readings = [run["results"][i]["privacy"][section][arch]["balanced_accuracy"] for run in runs]
                differs |= readings[0] != readings[1]
                assert got["balanced_accuracy"] == max(readings)
                assert [s["seed"] for s in got["over_seeds"]] == [0, 1]
                assert [s["balanced_accuracy"] for s in got["over_seeds"]] == readings
                assert runs[got["seed"]]["results"][i]["privacy"][section][arch]["balanced_accuracy"] == max(readings)
        worst = result["privacy"]["worst_attacker"]
        assert worst["balanced_accuracy"] == max(a["balanced_accuracy"] for a in result["privacy"]["attackers"].values())
        assert len(result["privacy"]["attackers"]["linear"]["over_seeds"][0]["restarts"]) == 2
    assert differs, "seeds 0 and 1 read every attacker the same: the test cannot tell a worst from a first"
    cleans = [run["clean"]["worst_attacker"]["balanced_accuracy"] for run in runs]
    assert merged["clean"]["worst_attacker"]["balanced_accuracy"] == max(cleans)
    # the plot's privacy axis says over which seeds its points are the worst; one seed's run does not
    from privsdk.train.eval.plot import privacy_axis_label
    assert "the worst over attacker seeds 0/1" in privacy_axis_label(merged["results"])
    assert "over attacker seeds" not in privacy_axis_label(runs[0]["results"])
    assert "over attacker seeds" not in privacy_axis_label(merged["results"] + runs[0]["results"])

    # `eval --seeds 0 1` runs both seeds itself (OUT/seed-N) and writes the same merged report to OUT
    assert main(["-q", "eval", *common, "--seeds", "0", "1", "--out", str(tmp_path / "both")]) == 0
    together = read_report(tmp_path / "both")
    assert (tmp_path / "both" / "seed-1" / "report.json").exists() and together["over_seeds"] == [0, 1]
    for got, want in zip(together["results"], merged["results"]):
        for section in ("attackers", "fixed_attackers"):
            assert {a: v["over_seeds"] for a, v in got["privacy"][section].items()} == \
                {a: v["over_seeds"] for a, v in want["privacy"][section].items()}
    args = build_parser().parse_args(["eval", *common, "--seeds", "3", "--out", str(tmp_path / "one")])
    with pytest.raises(InputError, match="two or more different"):
        args._main(args)
    args = build_parser().parse_args(["eval", *common, "--seeds", "0", "1", "--seed", "2", "--out", str(tmp_path / "x")])
    with pytest.raises(InputError, match="expected one of them"):
        args._main(args)

    with pytest.raises(InputError, match="different --seed"):
        _merge_args(tmp_path / "s0", tmp_path / "s0", tmp_path, "--over-seeds")
    with pytest.raises(InputError, match="--replace"):
        _merge_args(tmp_path / "s0", tmp_path / "s1", tmp_path, "--over-seeds", "--replace")

    # one filter out of runs that measured it beside another and under another name at one seed:
    # --rename makes the names agree, --only drops the rest, and the seeds then merge as above
    import json
    other = read_report(tmp_path / "s1")
    other["results"][0]["filter"]["name"] = "shipped"
    (tmp_path / "s1-shipped").mkdir()
    (tmp_path / "s1-shipped" / "report.json").write_text(json.dumps(other))
    assert main(["-q", "eval", "merge", "--over-seeds", "--report", str(tmp_path / "s0"),
                 "--report", str(tmp_path / "s1-shipped"), "--rename", "shipped=identity", "--only", "identity",
                 "--out", str(tmp_path / "picked")]) == 0
    picked = read_report(tmp_path / "picked")
    assert [r["filter"]["name"] for r in picked["results"]] == ["identity"]
    assert picked["results"][0]["privacy"] == merged["results"][0]["privacy"]
    assert read_report(tmp_path / "s1-shipped")["results"][0]["filter"]["name"] == "shipped"  # source untouched
    # with one report, --only takes filters out of it
    assert main(["-q", "eval", "merge", "--report", str(tmp_path / "s1"), "--only", "pixelate:12",
                 "--out", str(tmp_path / "one-filter")]) == 0
    alone = read_report(tmp_path / "one-filter")
    assert [r["filter"]["name"] for r in alone["results"]] == ["pixelate:12"]
    assert alone["results"][0] == runs[1]["results"][1] and alone["selected_from"] == str(tmp_path / "s1")
    assert alone["filter"]["name"] == "pixelate:12"
    assert alone["summary"]["retrained_attacker_balanced_accuracy"] == \
        runs[1]["results"][1]["privacy"]["worst_attacker"]["balanced_accuracy"]
    with pytest.raises(InputError, match="--only \\['nope'\\] matched no filter"):
        _merge_args(tmp_path / "s0", tmp_path / "s1", tmp_path, "--only", "nope")
    with pytest.raises(InputError, match="at least two"):
        args = build_parser().parse_args(["eval", "merge", "--report", str(tmp_path / "s0"), "--out",
                                          str(tmp_path / "x")])
        args._main(args)
    one = read_report(tmp_path / "s1")
    one["results"] = one["results"][:1]
    from privsdk.train.eval.merge import worst_over_seeds
    with pytest.raises(InputError, match="same filters at every seed"):
        worst_over_seeds([read_report(tmp_path / "s0"), one])


def _merge_args(a, b, tmp_path, *extra):
    from privsdk.cli import build_parser

    args = build_parser().parse_args(["eval", "merge", "--report", str(a), "--report", str(b),
                                      "--out", str(tmp_path / "refused"), *extra])
    return args._main(args)
