"""Tests of training/classical.py: the gradient-boosting baseline as a trial record."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from galaxies import morphometry
from galaxies.datasets import load_benchmark
from galaxies.pairs import data_identity
from galaxies.schema import SPLITS, domain_paths, load_domain_arrays, write_domain
from training import classical
from training.metrics import METRIC_NAMES, classification_metrics
from training.record import PREDICTIONS, SPLIT_KEYS, Failure, failure_record

MAX_TRAIN = 4  # non-merger galaxies in the training sample (the tiny pair has 2 merger ones)


@pytest.fixture(scope="module")
def trial(tiny_domain_pair, tmp_path_factory):
    out = tmp_path_factory.mktemp("classical") / "trial"
    record = classical.run_classical(tiny_domain_pair, out, seed=3,
                                     max_train_galaxies=MAX_TRAIN, workers=2, progress=False)
    with np.load(out / PREDICTIONS) as archive:
        predictions = {key: archive[key] for key in archive.files}
    return {"out": out, "record": record, "predictions": predictions,
            "bench": load_benchmark(tiny_domain_pair), "data": tiny_domain_pair}


def test_record_follows_the_trial_schema(trial):
    record = trial["record"]
    on_disk = json.loads((trial["out"] / "record.json").read_text())
    assert on_disk["metrics"] == json.loads(json.dumps(record["metrics"]))
    skeleton = failure_record("x", {}, Failure.ERROR, "", None, 0.0, None)
    assert set(record) == set(skeleton)
    assert (record["problem"], record["method"], record["backbone"]) == (
        "classical_gbt", "classical", "gbt")
    assert record["status"] == "ok" and record["failure"] is None and record["seed"] == 3
    assert record["history"] == [] and record["diagnostics"] == {}
    assert record["best_epoch"] is None and record["epochs_run"] is None
    assert record["files"] == {"roc": "roc.json", "predictions": "predictions.npz"}
    config = record["config"]
    assert config["method"] == "classical" and config["backbone"] == "gbt"
    assert config["seed"] == 3 == config["random_state"]
    assert config["max_train_galaxies"] == MAX_TRAIN
    for key, value in classical.GBT_PARAMS.items():
        assert config[key] == value
    # the skeleton's data keys (identity: what seed studies and --from-trial compare)
    assert set(record["data"]) == set(skeleton["data"]) == {
        "dir", "source_attrs", "target_attrs", "channel_stats", "identity"}
    assert record["data"]["identity"] == data_identity(trial["data"])
    assert record["data"]["channel_stats"] is None
    assert set(record["metrics"]) == set(SPLIT_KEYS)
    for values in record["metrics"].values():
        assert set(values) == set(METRIC_NAMES)
    roc = json.loads((trial["out"] / "roc.json").read_text())
    assert set(roc) == set(SPLIT_KEYS) and set(roc["source_test"]) >= {"fpr", "tpr"}
    details = json.loads((trial["out"] / classical.DETAILS).read_text())
    assert details["train_per_class"] == {"0": MAX_TRAIN, "1": 2}  # one copy per galaxy


def test_predictions_cover_every_row_of_each_split_in_file_order(trial):
    bench, predictions = trial["bench"], trial["predictions"]
    assert len(predictions) == 3 * len(SPLIT_KEYS)
    for key in SPLIT_KEYS:
        domain, split = key.split("_")
        data = getattr(bench, domain)
        mask = data.split == SPLITS[split]
        p = predictions[f"{key}_p_merger"]
        assert p.dtype == np.float64 and len(p) == mask.sum()
        assert ((p >= 0) & (p <= 1)).all()
        label, ids = predictions[f"{key}_label"], predictions[f"{key}_galaxy_id"]
        assert label.dtype == np.uint8 and ids.dtype == np.int64
        np.testing.assert_array_equal(label, data.labels[mask])
        np.testing.assert_array_equal(ids, data.galaxy_id[mask])
        assert trial["record"]["metrics"][key] == classification_metrics(label, p)


def test_p_merger_is_the_fitted_models_predict_proba(trial, monkeypatch):
    bench = trial["bench"]
    data = {"source": bench.source, "target": bench.target}
    train_rows = classical.galaxy_sample(bench.source, "train", MAX_TRAIN, seed=3)
    rows = {(d, s): np.flatnonzero(data[d].split == SPLITS[s]) for d, s in classical.EVAL_SPLITS}

    def no_measuring(*args, **kwargs):
        raise AssertionError("the cache should have every row")

    monkeypatch.setattr(morphometry, "image_statistics", no_measuring)
    needed = {"source": np.concatenate([train_rows, rows[("source", "val")],
                                        rows[("source", "test")]]),
              "target": np.concatenate([rows[("target", "val")], rows[("target", "test")]])}
    stats = classical.cached_statistics(data, needed, trial["out"] / classical.STATISTICS,
                                        progress=False)
    features = classical.feature_columns()
    assert "morph_flag" not in features and "peak_offset" in features and "gini" in features
    model = classical.make_estimator(3)
    val = rows[("source", "val")]
    with classical.one_thread():
        model.fit(stats["source"].loc[train_rows, features].to_numpy(),
                  bench.source.labels[train_rows].astype(int),
                  X_val=stats["source"].loc[val, features].to_numpy(),
                  y_val=bench.source.labels[val].astype(int))
        for domain, split in classical.EVAL_SPLITS:
            x = stats[domain].loc[rows[(domain, split)], features].to_numpy()
            np.testing.assert_array_equal(trial["predictions"][f"{domain}_{split}_p_merger"],
                                          model.predict_proba(x)[:, 1])


def test_target_labels_do_not_enter_the_fit(trial, tmp_path, capsys):
    shuffled = tmp_path / "shuffled"
    for domain, path in domain_paths(trial["data"]).items():
        data = load_domain_arrays(path)
        if domain == "target":
            data.labels = np.random.default_rng(0).permutation(data.labels)
            data.labels[data.split == SPLITS["test"]] ^= 1  # and certainly differ
        write_domain(domain_paths(shuffled)[domain], data)
    out = tmp_path / "trial"
    out.mkdir()
    shutil.copy(trial["out"] / classical.STATISTICS, out)  # same images: no re-measuring
    assert classical.main(["--data", str(shuffled), "--out", str(out), "--seed", "3",
                           "--max-train-galaxies", str(MAX_TRAIN), "--workers", "1",
                           "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["problem"] == "classical_gbt"
    with np.load(out / PREDICTIONS) as archive:
        for key in SPLIT_KEYS:
            np.testing.assert_array_equal(archive[f"{key}_p_merger"],
                                          trial["predictions"][f"{key}_p_merger"])
        assert not np.array_equal(archive["target_test_label"],
                                  trial["predictions"]["target_test_label"])


def _fake_statistics(calls):
    columns = [*morphometry.LAYOUT_COLUMNS, *morphometry.MORPHOLOGY_COLUMNS]

    def fake(images, **kwargs):
        calls.append(len(images))
        values = images.reshape(len(images), -1)[:, : len(columns)].astype(np.float64)
        return pd.DataFrame(values, columns=columns)

    return fake


def test_cache_resumes_after_an_interruption(tiny_domain_arrays, tmp_path, monkeypatch):
    monkeypatch.setattr(classical, "BLOCK_IMAGES", 4)
    calls: list[int] = []
    fake = _fake_statistics(calls)
    cache = tmp_path / classical.STATISTICS
    rows = {"source": np.arange(10), "target": np.arange(3)}

    def interrupted(images, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        return fake(images, **kwargs)

    monkeypatch.setattr(morphometry, "image_statistics", interrupted)
    with pytest.raises(KeyboardInterrupt):
        classical.cached_statistics(tiny_domain_arrays, rows, cache, progress=False)
    assert calls == [4, 4]  # two blocks measured and saved before the interruption
    monkeypatch.setattr(morphometry, "image_statistics", fake)
    first = classical.cached_statistics(tiny_domain_arrays, rows, cache, progress=False)
    assert calls == [4, 4, 2, 3]  # only the rest
    more = {"source": np.arange(12), "target": np.arange(3)}
    second = classical.cached_statistics(tiny_domain_arrays, more, cache, progress=False)
    assert calls == [4, 4, 2, 3, 2]
    pd.testing.assert_frame_equal(second["source"].loc[np.arange(10)], first["source"])
    fresh = _fake_statistics([])(tiny_domain_arrays["source"].images[:12])
    np.testing.assert_array_equal(second["source"].to_numpy(), fresh.to_numpy())

    # a changed image (same row) is measured again; other rows are still reused
    tiny_domain_arrays["source"].images[5] += 1.0
    classical.cached_statistics(tiny_domain_arrays, more, cache, progress=False)
    assert calls[-1] == 1


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tiny_domain_pair, tmp_path, capsys):
    out = tmp_path / "out"
    assert classical.main(["--data", str(tmp_path / "nope"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "does not exist" in err
    assert not out.exists()
    assert classical.main(["--data", str(tiny_domain_pair), "--out", str(out),
                           "--max-train-galaxies", "0"]) == 2
    assert "must be >= 1" in capsys.readouterr().err
    assert not out.exists()


def test_seed_study_shares_one_cache_and_loads_like_any_seed_study(trial, tmp_path, capsys):
    from analysis.tables import table1
    from search.results import load_runs

    out = tmp_path / "study"
    shutil.copyfile(trial["out"] / classical.STATISTICS, tmp_path / "warm.npz")
    out.mkdir()
    shutil.copyfile(tmp_path / "warm.npz", out / classical.STATISTICS)  # measured once already
    assert classical.main(["--data", str(trial["data"]), "--out", str(out), "--seeds", "2",
                           "--max-train-galaxies", str(MAX_TRAIN), "--quiet"]) == 0
    assert "seed 2: source test accuracy" in capsys.readouterr().out
    meta = json.loads((out / "seeds.json").read_text())
    assert meta["problem"] == classical.PROBLEM and meta["seeds"] == [1, 2]
    assert sorted(p.name for p in out.glob("seed_*")) == ["seed_1", "seed_2"]
    assert not list(out.glob("seed_*/statistics.npz"))  # one shared cache
    frame = load_runs(out)
    assert list(frame["problem"]) == [classical.PROBLEM] * 2
    assert (frame["status"] == "ok").all()
    table = table1(frame)
    row = table.loc[classical.TABLE_LABEL]
    accuracy = frame["target_test_accuracy"]
    assert row.iloc[1] == f"{100 * accuracy.iloc[0]:.1f} ({100 * accuracy.mean():.1f} ± " \
                          f"{100 * accuracy.std(ddof=1):.1f})"
    # a second call keeps the finished seeds
    before = (out / "seed_1" / "record.json").stat().st_mtime_ns
    assert classical.main(["--data", str(trial["data"]), "--out", str(out), "--seeds", "2",
                           "--max-train-galaxies", str(MAX_TRAIN), "--quiet"]) == 0
    assert (out / "seed_1" / "record.json").stat().st_mtime_ns == before
