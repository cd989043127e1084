"""The controls that split a DA gain: joint-batch BatchNorm, AdaBN, per-domain normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from galaxies.datasets import channel_stats, domain_stats, load_benchmark, split_tensors
from galaxies.schema import SPLITS
from training.loop import run_trial
from training.methods.adabn import adapt_batchnorm
from training.naming import problem_config
from training.registry import get_method
from training.trainer import Trainer

CPU = torch.device("cpu")
FEW = ["max_batches_per_epoch=2", "batch_size=4", "epochs=2", "patience=2"]


def trainer_for(problem: str, data_dir, extra=()) -> Trainer:
    return Trainer(problem_config(problem, [*FEW, *extra]), load_benchmark(data_dir), CPU)


def rows_of(batch: torch.Tensor, pool: torch.Tensor) -> set[int]:
    """Indices of ``pool`` rows that ``batch`` rows equal exactly (-1 for none)."""
    flat_pool = pool.reshape(len(pool), -1)
    out = set()
    for row in batch.reshape(len(batch), -1):
        hits = torch.nonzero((flat_pool == row).all(dim=1)).flatten()
        out.add(int(hits[0]) if len(hits) else -1)
    return out


def test_jointbn_feeds_target_images_in_the_same_batch_with_no_transfer_loss(tiny_domain_pair):
    trainer = trainer_for("jointbn_deepmerge", tiny_domain_pair)
    assert trainer.config.lambda_tl == 0.0 and trainer.uses_target
    xs_pool, _ = trainer.data[("source", "train")]
    xt_pool, _ = trainer.data[("target", "train")]
    seen = []
    forward = trainer.forward

    def spy(x):
        seen.append(x.detach().clone())
        return forward(x)

    trainer.forward = spy
    row = trainer.train_epoch(1)
    assert row["train_steps"] == 2 and len(seen) == 2
    for x in seen:  # one forward pass per step: [4 source rows; 4 target training rows]
        assert len(x) == 8
        assert -1 not in rows_of(x[:4], xs_pool)
        assert -1 not in rows_of(x[4:], xt_pool)
    assert row["train_tl_loss"] == 0.0
    assert row["train_loss"] == pytest.approx(row["train_cl_loss"])


def test_jointbn_differs_from_no_da_only_through_the_batch_statistics(tiny_domain_pair, tmp_path):
    joint = run_trial(problem_config("jointbn_deepmerge", FEW), tiny_domain_pair,
                      tmp_path / "j", progress=False)
    alone = run_trial(problem_config("none_deepmerge", FEW), tiny_domain_pair,
                      tmp_path / "n", progress=False)
    assert joint["status"] == alone["status"] == "ok"
    assert all(h["train_tl_loss"] == 0.0 for h in joint["history"])
    # The target rows in each batch change BatchNorm's statistics, hence the source loss.
    assert joint["history"][0]["train_cl_loss"] != alone["history"][0]["train_cl_loss"]


def batchnorm_inputs(model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """The inputs of every BatchNorm layer of ``model`` (eval mode) on ``images``."""
    captured = []
    layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    hooks = [layer.register_forward_hook(lambda m, args, out: captured.append(args[0]))
             for layer in layers]
    model.eval()
    with torch.no_grad():
        model.forward_with_features(images)
    for hook in hooks:
        hook.remove()
    return captured


def test_adabn_statistics_are_those_of_the_target_training_images(tiny_domain_pair):
    trainer = trainer_for("adabn_deepmerge", tiny_domain_pair)
    assert not trainer.uses_target and trainer.config.lambda_tl == 0.0
    trainer.train_epoch(1)
    original = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    xt_train, _ = trainer.data[("target", "train")]
    adapted = trainer.target_model()
    # The trained network is untouched; only BatchNorm buffers differ in the adapted copy.
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, original[key]), key
    changed = {k for k, v in adapted.state_dict().items() if not torch.equal(v, original[k])}
    assert changed and all("running" in k or "num_batches" in k for k in changed)
    # Layer by layer, each BatchNorm holds the mean/variance of its inputs on T_train, the
    # earlier layers already adapted (one batch here: all rows fit in EVAL_BATCH_SIZE).
    layers = [m for m in adapted.modules() if isinstance(m, nn.BatchNorm2d)]
    inputs = batchnorm_inputs(adapted, xt_train)
    assert len(layers) == len(inputs) == 3
    for layer, a in zip(layers, inputs, strict=True):
        torch.testing.assert_close(layer.running_mean, a.mean(dim=(0, 2, 3)), rtol=1e-4,
                                   atol=1e-4)
        torch.testing.assert_close(layer.running_var, a.var(dim=(0, 2, 3), unbiased=True),
                                   rtol=1e-4, atol=1e-4)


def test_adabn_reads_the_target_training_split_only(tiny_domain_pair):
    trainer = trainer_for("adabn_deepmerge", tiny_domain_pair)
    before = trainer.target_model().state_dict()
    for split in ("val", "test"):  # scrambling the other target splits changes nothing
        x, y = trainer.data[("target", split)]
        trainer.data[("target", split)] = (torch.randn_like(x), 1 - y)
    after = trainer.target_model().state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    x, y = trainer.data[("target", "train")]
    trainer.data[("target", "train")] = (x + 1.0, y)
    moved = trainer.target_model().state_dict()
    assert not all(torch.equal(before[k], moved[k]) for k in before)


def test_adabn_trial_is_no_da_on_the_source_and_adapted_on_the_target(tiny_domain_pair,
                                                                       tmp_path):
    ada = run_trial(problem_config("adabn_deepmerge", FEW), tiny_domain_pair, tmp_path / "a",
                    progress=False)
    plain = run_trial(problem_config("none_deepmerge", FEW), tiny_domain_pair, tmp_path / "n",
                      progress=False)
    assert ada["history"] == [{**h, "train_time_s": a["train_time_s"],
                               "train_compute_s": a["train_compute_s"],
                               "epoch_time_s": a["epoch_time_s"]}
                              for h, a in zip(plain["history"], ada["history"], strict=True)]
    for split in ("source_val", "source_test"):  # same training, same source scores
        assert ada["metrics"][split] == plain["metrics"][split]
    pa = np.load(tmp_path / "a" / "predictions.npz")
    pn = np.load(tmp_path / "n" / "predictions.npz")
    np.testing.assert_array_equal(pa["source_test_p_merger"], pn["source_test_p_merger"])
    assert not np.array_equal(pa["target_test_p_merger"], pn["target_test_p_merger"])
    checkpoint = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    assert "target_model" in checkpoint


def test_adabn_needs_batchnorm():
    class NoBN(nn.Module):
        def forward_with_features(self, x):
            return x, x

    with pytest.raises(ValueError, match="BatchNorm"):
        adapt_batchnorm(NoBN(), torch.zeros(2, 3, 4, 4), CPU)
    assert get_method("adabn").adapt_for_target is not None


def test_per_domain_normalisation_uses_each_domains_training_split(tiny_domain_pair):
    bench = load_benchmark(tiny_domain_pair)
    trainer = trainer_for("none_deepmerge", tiny_domain_pair, ["normalization=per_domain"])
    target_train = np.flatnonzero(bench.target.split == SPLITS["train"])
    want = channel_stats(bench.target.images, rows=target_train)
    assert trainer.stats["target"] == want
    assert trainer.stats["source"] == bench.stats  # the source keeps its own train split's
    assert want != bench.stats
    for split in ("train", "val", "test"):
        x, _ = trainer.data[("target", split)]
        torch.testing.assert_close(x, split_tensors(bench.target, split, want)[0])
        xs, _ = trainer.data[("source", split)]
        torch.testing.assert_close(xs, split_tensors(bench.source, split, bench.stats)[0])
    # The default standardises both domains with the source-train statistics.
    default = trainer_for("none_deepmerge", tiny_domain_pair)
    assert default.stats["target"] == bench.stats


def test_per_domain_normalisation_ignores_target_val_and_test_rows(tiny_domain_pair):
    bench = load_benchmark(tiny_domain_pair)

    stats = domain_stats(bench, "per_domain")["target"]
    held = bench.target.split != SPLITS["train"]
    bench.target.images[held] += 100.0  # (in memory only)
    assert domain_stats(bench, "per_domain")["target"] == stats


@pytest.mark.parametrize("method", ["jointbn", "adabn"])
def test_controls_run_from_train_cli(method, tiny_domain_pair, tmp_path):
    from training.train import main

    out = tmp_path / method
    code = main(["--problem", f"{method}_deepmerge", "--data", str(tiny_domain_pair),
                 "--out", str(out), *sum((["--set", s] for s in FEW), []),
                 "--set", "normalization=per_domain"])
    assert code == 0
    assert (out / "record.json").is_file()


@pytest.mark.parametrize("problem", ["jointbn_deepmerge", "adabn_deepmerge"])
def test_controls_run_as_searches(problem, tiny_domain_pair, tmp_path):
    import json

    import pandas as pd

    from search.run import main

    log_dir = tmp_path / problem
    code = main([str(a) for a in (
        "--problem", problem, "--data", tiny_domain_pair, "--log-dir", log_dir,
        "--max-evals", 2, "--evaluator", "serial", "--search", "random",
        "--set", "epochs=1", "--set", "max_batches_per_epoch=2",
        "--set", "normalization=per_domain", "--quiet")])
    assert code == 0
    results = pd.read_csv(log_dir / "results.csv")
    assert len(results) == 2
    assert not results["objective"].astype(str).str.startswith("F").any()
    for job_id in results["job_id"]:
        record = json.loads((log_dir / "trials" / str(job_id) / "record.json").read_text())
        assert record["method"] == problem.split("_")[0]
        assert record["config"]["normalization"] == "per_domain"
        assert record["config"]["lambda_tl"] == 0.0


def test_adabn_from_a_no_da_trial_equals_adabn_trained(tiny_domain_pair, tmp_path, capsys):
    from training.train import main

    sets = sum((["--set", s] for s in FEW), [])
    common = ["--data", str(tiny_domain_pair), "--seed", "2", "--quiet", *sets]
    assert main(["--problem", "none_deepmerge", "--out", str(tmp_path / "none"), *common]) == 0
    assert main(["--problem", "adabn_deepmerge", "--out", str(tmp_path / "trained"),
                 *common]) == 0
    assert main(["--problem", "adabn_deepmerge", "--out", str(tmp_path / "from"),
                 "--from-trial", str(tmp_path / "none"), *common]) == 0
    import json

    trained = json.loads((tmp_path / "trained" / "record.json").read_text())
    derived = json.loads((tmp_path / "from" / "record.json").read_text())
    assert derived["metrics"] == trained["metrics"]
    assert derived["diagnostics"] == trained["diagnostics"]
    assert derived["best_epoch"] == trained["best_epoch"]
    assert derived["config"] == trained["config"]
    assert derived["reevaluated_from"].endswith("none")
    a = np.load(tmp_path / "trained" / "predictions.npz")
    b = np.load(tmp_path / "from" / "predictions.npz")
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
    # A trial that trains another network cannot stand in: one clear error, exit 2.
    capsys.readouterr()
    assert main(["--problem", "adabn_deepmerge", "--out", str(tmp_path / "bad"),
                 "--from-trial", str(tmp_path / "none"), *common, "--set", "lr=0.01"]) == 2
    assert "what differs: ['lr']" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "record.json").exists()
    # A source-trained network cannot be filed as an oracle (the configurations differ only
    # in the method, but the oracles learn from other labels).
    for oracle in ("oracle_deepmerge", "oracleboth_deepmerge"):
        assert main(["--problem", oracle, "--out", str(tmp_path / oracle),
                     "--from-trial", str(tmp_path / "none"), *common]) == 2
        assert "trains_on source vs " in capsys.readouterr().err
        assert not (tmp_path / oracle / "record.json").exists()
