"""Diagnostics (latent spaces, Grad-CAM, reliability) on the real tiny records of ``make_runs``.

The selected DeepMerge trials are none/mmd/dann_deepmerge (searches); ResNet18 has
none_resnet (seed study). Each domain's test split of ``tiny_domain_pair`` holds 9 images (5
mergers, 4 non-mergers).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_analysis import make_runs

from analysis import diagnostics
from analysis.report import main as report_main
from apply.calibration import expected_calibration_error, reliability_curve
from search import results as load

N_PER_DOMAIN = 6
N_EXAMPLES = 2


@pytest.fixture(scope="session")
def runs(tiny_domain_pair, tmp_path_factory) -> Path:
    return make_runs(tmp_path_factory.getbasetemp() / "analysis", tiny_domain_pair)


@pytest.fixture(scope="module")
def frame(runs):
    return load.load_runs(runs)


@pytest.fixture(scope="module")
def models(frame):
    return diagnostics.diagnostic_models(frame, "deepmerge")


def test_models_in_table_order(models):
    assert [m.method for m in models] == ["none", "mmd", "dann"]
    assert [m.label for m in models] == ["no-DA", "MMD", "adversarial"]
    assert all(m.backbone == "deepmerge" for m in models)
    assert all(len(m.test["source"].labels) == 9 for m in models)


def test_stratified_subsample():
    labels = np.array([1] * 30 + [0] * 70)
    rows = diagnostics.stratified_subsample(labels, 10, seed=3)
    assert len(rows) == 10 and len(set(rows)) == 10 and (np.diff(rows) > 0).all()
    assert (labels[rows] == 1).sum() == 3
    assert (rows == diagnostics.stratified_subsample(labels, 10, seed=3)).all()
    assert (diagnostics.stratified_subsample(labels, 500) == np.arange(100)).all()
    assert set(labels[diagnostics.stratified_subsample(np.array([1] + [0] * 99), 2)]) == {0, 1}


def test_latent_space_points_and_figure(models):
    spaces = diagnostics.latent_spaces(models, max_per_domain=N_PER_DOMAIN)
    assert [s.method for s in spaces] == ["none", "mmd", "dann"]
    for space, entry in zip(spaces, models, strict=True):
        for domain in ("source", "target"):
            mask = space.domain == domain
            assert mask.sum() == N_PER_DOMAIN
            assert set(space.labels[mask]) == {0, 1}
            assert (space.labels[mask] == entry.test[domain].labels[space.index[mask]]).all()
        for embedding in ("isomap", "tsne"):
            points = space.embeddings[embedding]
            assert points.shape == (2 * N_PER_DOMAIN, 2) and np.isfinite(points).all()
    figure = diagnostics.latent_figure(spaces)
    scatters = {c.get_gid(): c for ax in figure.axes for c in ax.collections}
    assert len(scatters) == len(spaces) * 2 * 4  # 2 embeddings x (2 domains + 2 classes)
    for space in spaces:
        for embedding in ("isomap", "tsne"):
            for domain in ("source", "target"):
                drawn = scatters[f"{space.method}:{embedding}:domain:{domain}"]
                assert drawn.get_label() == domain
                np.testing.assert_allclose(drawn.get_offsets(), space.points(embedding, domain))
            merger = scatters[f"{space.method}:{embedding}:class:1"]
            np.testing.assert_allclose(merger.get_offsets(),
                                       space.embeddings[embedding][space.labels == 1])
    titles = " ".join(ax.get_title() for ax in figure.axes)
    assert "no-DA" in titles and "MMD" in titles and "adversarial" in titles


def manual_gradcam(network, x):
    """Grad-CAM by hand: a hook on the last conv, alpha_k = mean gradient, ReLU(sum alpha_k A^k)."""
    layer = diagnostics.last_conv_layer(network.backbone)
    saved = {}
    handle = layer.register_forward_hook(lambda m, i, o: saved.setdefault("a", o))
    try:
        logits = network(x)
    finally:
        handle.remove()
    activation = saved["a"]
    (grad,) = torch.autograd.grad(logits[:, 1].sum(), activation)
    cam = F.relu((grad.mean(dim=(2, 3), keepdim=True) * activation).sum(1, keepdim=True))
    return F.interpolate(cam, (75, 75), mode="bilinear")[:, 0].detach().double().numpy()


def test_gradcam_maps(models):
    network = models[0].model.networks["source"]
    before = {k: v.clone() for k, v in network.state_dict().items()}
    results = diagnostics.gradcam(models, n_examples=N_EXAMPLES)
    assert [r.method for r in results] == ["none", "mmd", "dann"]
    for result, entry in zip(results, models, strict=True):
        for domain in ("source", "target"):
            maps = result.maps[domain]
            assert maps.shape == (2 * N_EXAMPLES, 75, 75)
            assert np.isfinite(maps).all() and (maps >= 0).all() and maps.max() > 0
            assert not np.allclose(maps[0], maps[1])  # two different mergers
            assert list(result.labels[domain]) == [1] * N_EXAMPLES + [0] * N_EXAMPLES
            rows = result.index[domain]
            x = entry.model.normalize(entry.test[domain].images[rows], domain)
            np.testing.assert_allclose(maps, manual_gradcam(entry.model.networks[domain], x),
                                       rtol=1e-4, atol=1e-9)
            np.testing.assert_allclose(result.p_merger[domain],
                                       entry.model.prob_merger(x, domain, normalized=True))
    assert not network.training
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())
    assert all(p.grad is None for p in network.parameters())
    figure = diagnostics.gradcam_figure(results)
    heat = {im.get_gid(): im for ax in figure.axes for im in ax.images if im.get_gid()}
    assert len(heat) == len(results) * 2 * 2 * N_EXAMPLES
    np.testing.assert_allclose(heat["mmd:target:3"].get_array(), results[1].maps["target"][3])


def test_reliability_figure_equals_curves(models):
    results = diagnostics.reliability(models)
    figure = diagnostics.reliability_figure(results)
    lines = {ln.get_gid(): ln for ax in figure.axes for ln in ax.lines if ln.get_gid()}
    bars = {c.get_label(): c for ax in figure.axes for c in ax.containers}
    for entry in models:
        with np.load(entry.trial_dir / "predictions.npz") as predictions:
            for domain in ("source", "target"):
                labels = predictions[f"{domain}_test_label"]
                prob = predictions[f"{domain}_test_p_merger"]
                curve = reliability_curve(labels, prob, n_bins=10)
                filled = [i for i, c in enumerate(curve["count"]) if c]
                line = lines[f"{entry.method}:{domain}"]
                np.testing.assert_allclose(line.get_xdata(), [curve["mean_prob"][i]
                                                              for i in filled])
                np.testing.assert_allclose(line.get_ydata(), [curve["fraction"][i]
                                                              for i in filled])
                assert f"ECE {expected_calibration_error(labels, prob):.3f}" in line.get_label()
                assert line.get_linestyle() == ("--" if domain == "source" else "-")
                heights = [r.get_height() for r in bars[f"{entry.method} {domain} count"]]
                assert heights == curve["count"] and sum(heights) == len(labels)


def test_report_writes_and_links_diagnostics(runs, tmp_path):
    out = tmp_path / "report"
    assert report_main(["--runs", str(runs), "--out", str(out), "--diagnostics"]) == 0
    markdown = (out / "report.md").read_text()
    figures_part = markdown.split("## Figures")[1].split("## Runs read")[0]
    for kind in ("latent", "gradcam", "reliability"):
        for backbone in ("deepmerge", "resnet18"):
            for suffix in (".png", ".pdf"):
                path = out / "figures" / f"{kind}_{backbone}{suffix}"
                assert path.is_file() and path.stat().st_size > 0, path
            assert f"(figures/{kind}_{backbone}.png)" in figures_part
    assert "Grad-CAM, ResNet18" in figures_part


def test_missing_checkpoint_or_data_is_skipped(runs, tmp_path, capsys):
    copy = tmp_path / "runs"
    for problem in ("none_deepmerge", "mmd_deepmerge"):
        shutil.copytree(runs / "search" / problem, copy / problem)
    frame = load.load_runs(copy)
    chosen = {m.method: m.trial_dir for m in diagnostics.diagnostic_models(frame, "deepmerge")}
    (chosen["none"] / "checkpoint.pt").unlink()
    with pytest.warns(diagnostics.DiagnosticsWarning, match="skipping none_deepmerge.*checkpoint"):
        left = diagnostics.diagnostic_models(frame, "deepmerge")
    assert [m.method for m in left] == ["mmd"]

    out = tmp_path / "report"
    assert report_main(["--runs", str(copy), "--out", str(out), "--diagnostics"]) == 0
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if "skipping" in ln]
    assert len(warnings) == 1 and warnings[0].startswith("warning: diagnostics: skipping "
                                                         "none_deepmerge")
    assert (out / "figures/latent_deepmerge.png").is_file()
    assert not (out / "figures/latent_resnet18.png").exists()

    record_path = chosen["mmd"] / "record.json"
    record = json.loads(record_path.read_text())
    record["data"]["dir"] = str(tmp_path / "no-such-data")
    record_path.write_text(json.dumps(record))
    with pytest.warns(diagnostics.DiagnosticsWarning) as caught:
        assert diagnostics.diagnostics_figures(frame, tmp_path / "empty") == []
    messages = [str(w.message) for w in caught]  # table order: no-DA first
    assert len(messages) == 2 and "skipping none_deepmerge" in messages[0]
    assert "skipping mmd_deepmerge" in messages[1] and "no-such-data does not exist" in messages[1]
    assert not (tmp_path / "empty").exists()
