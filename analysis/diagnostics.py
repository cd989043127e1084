r"""Diagnostics of trained models: latent spaces, Grad-CAM maps and reliability diagrams.

These apply the trained networks of the selected trials (:func:`apply.inference.load_trained`)
to their own test images; nothing is trained or changed. Each diagnostic is a pure function that
computes numbers, plus a figure function that draws them (no pyplot state, as
:mod:`analysis.figures`):

- **Latent space** (:func:`latent_spaces`, :func:`latent_figure`): the transfer features
  ``network.features(x)`` (what MMD / the domain classifier sees) of a seeded, class-stratified
  subsample of the source and the target test images, stacked and embedded in 2-D with Isomap
  (Tenenbaum et al. 2000), as DeepMerge II (Ciprijanovic et al. 2021, MNRAS 506, 677) uses it
  to show that domain adaptation makes the two domains overlap, and with t-SNE (van der Maaten &
  Hinton 2008; ``perplexity = min(30, n/4)``, ``init="pca"``). Each domain is scored by its
  own network and statistics (they differ for AdaBN and per-domain normalisation).
- **Grad-CAM** (:func:`gradcam`, :func:`gradcam_figure`; Selvaraju et al. 2017, ICCV; DeepMerge II
  shows such maps for mergers): for the merger logit ``y = z_1`` and the feature
  maps ``A^k`` of the backbone's last convolution,

  .. math:: L = \mathrm{ReLU}\Bigl(\sum_k \alpha_k A^k\Bigr), \qquad
            \alpha_k = \frac{1}{Z}\sum_{i,j} \frac{\partial y}{\partial A^k_{ij}},

  computed with Captum's ``LayerGradCam`` (``relu_attributions=True``) and upsampled
  bilinearly to 75 × 75. The examples are the first ``n_examples`` mergers and the first
  ``n_examples`` non-mergers of each domain's test split in file order (the same galaxies for
  every model, so the maps can be compared across models).
- **Reliability diagram** (:func:`reliability`, :func:`reliability_figure`; DeGroot & Fienberg
  1983, Guo et al. 2017, ICML, Fig. 1): per equal-width bin of ``p_merger`` the observed merger
  fraction against the mean ``p_merger``, read from each trial's ``predictions.npz`` (no model
  is run), with the bin counts and the top-label ECE (:mod:`apply.calibration`).

:func:`diagnostics_figures` writes ``figures/{latent,gradcam,reliability}_<backbone>.{png,pdf}``
for every backbone with a selected trial that has a checkpoint (``analysis/report.py
--diagnostics``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from analysis.figures import new_figure, save_figure
from analysis.tables import backbone_labels
from apply.calibration import expected_calibration_error, reliability_curve
from apply.inference import ModelLoadError, TrainedModel, load_trained
from galaxies.datasets import load_benchmark
from galaxies.schema import DomainData
from galaxies.validate import InvalidDatasetError
from models.registry import backbone_specs, get_backbone
from search.selection import DEFAULT_STRATEGY, Strategy, selected_trials
from training.record import resolve_path
from training.registry import get_method, method_specs

DOMAINS = ("source", "target")
CLASS_NAMES = {0: "non-merger", 1: "merger"}
DOMAIN_COLORS = {"source": "#4C72B0", "target": "#DD8452"}
CLASS_COLORS = {0: "#55A868", 1: "#C44E52"}
EMBEDDINGS = ("isomap", "tsne")
EMBEDDING_LABELS = {"isomap": "Isomap", "tsne": "t-SNE"}
MERGER_CLASS = 1
F160W_CHANNEL = 2
ISOMAP_NEIGHBORS = 5
RELIABILITY_BINS = 10


class DiagnosticsWarning(UserWarning):
    """A selected trial left out of the diagnostics (no checkpoint, data folder missing)."""


@dataclass
class DiagnosticModel:
    """A selected trial loaded for the diagnostics.

    Attributes:
        method: registered method name (``none``, ``mmd``, ...).
        label: the method's label (``no-DA``, ``MMD``, ...).
        color: the method's colour.
        backbone: registered backbone name.
        problem: problem name.
        trial_dir: the trial folder.
        model: the trained networks and statistics.
        test: ``{"source": DomainData, "target": DomainData}``, the test splits (raw images).
    """

    method: str
    label: str
    color: str
    backbone: str
    problem: str
    trial_dir: Path
    model: TrainedModel
    test: dict[str, DomainData]


def _method_info(method: str) -> tuple[str, str]:
    try:
        spec = get_method(method)
    except (KeyError, ValueError):
        return method, "0.3"
    return spec.label, spec.color


def _skip(problem: str, trial_dir: Any, reason: str) -> None:
    reason = " ".join(str(reason).split())
    where = "" if str(trial_dir) in reason else f" ({trial_dir})"
    warnings.warn(f"diagnostics: skipping {problem}{where}: {reason}", DiagnosticsWarning,
                  stacklevel=3)


def _test_splits(data_dir: Path, cache: dict[Path, dict[str, DomainData]]
                 ) -> dict[str, DomainData]:
    if data_dir not in cache:
        bench = load_benchmark(data_dir)
        cache[data_dir] = {"source": bench.source.subset("test"),
                           "target": bench.target.subset("test")}
    return cache[data_dir]


def diagnostic_models(frame: pd.DataFrame, backbone: str,
                      strategy: str | Strategy = DEFAULT_STRATEGY, device: str = "cpu",
                      cache: dict[Path, dict[str, DomainData]] | None = None
                      ) -> list[DiagnosticModel]:
    """The selected trial of every method for ``backbone``, loaded, in table order.

    A trial without a usable checkpoint (e.g. the classical baseline) or whose data folder
    (``record["data"]["dir"]``) is missing or invalid is skipped with a one-line
    :class:`DiagnosticsWarning`.

    Args:
        frame: trials (:func:`search.results.load_runs`).
        backbone: a registered backbone name (or its problem suffix, ``resnet``).
        strategy: model-selection strategy (:mod:`search.selection`).
        device: where the networks run.
        cache: ``{data folder: test splits}`` shared between calls (filled as it goes).
    """
    backbone = get_backbone(backbone).name
    cache = {} if cache is None else cache
    selected = selected_trials(frame, strategy)
    selected = selected[selected["backbone"] == backbone].set_index("method")
    out = []
    for spec in method_specs():
        if spec.name not in selected.index:
            continue
        row = selected.loc[spec.name]
        trial_dir = Path(row["trial_dir"])
        try:
            model = load_trained(trial_dir, device=device)
        except ModelLoadError as exc:
            _skip(row["problem"], trial_dir, exc)
            continue
        data_text = (model.record.get("data") or {}).get("dir")
        if not data_text:
            _skip(row["problem"], trial_dir, "its record names no data folder")
            continue
        data_dir = resolve_path(data_text)
        if not data_dir.is_dir():
            _skip(row["problem"], trial_dir, f"data folder {data_dir} does not exist")
            continue
        try:
            test = _test_splits(data_dir, cache)
        except InvalidDatasetError as exc:
            _skip(row["problem"], trial_dir, exc)
            continue
        out.append(DiagnosticModel(spec.name, spec.label, spec.color, backbone,
                                   str(row["problem"]), trial_dir, model, test))
    return out


# --- latent space --------------------------------------------------------------------------


def stratified_subsample(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``min(n, len(labels))`` rows, each class in proportion to its size.

    Class ``c`` of ``N_c`` rows gets ``round(n N_c / N)`` rows (largest remainders; at least
    one row of every class when ``n`` allows it), drawn without replacement with
    ``numpy.random.default_rng(seed)``. All rows when ``n >= len(labels)``.
    """
    labels = np.asarray(labels).ravel()
    total = len(labels)
    if n >= total:
        return np.arange(total)
    classes, counts = np.unique(labels, return_counts=True)
    quota = n * counts / total
    take = np.floor(quota).astype(int)
    if n >= len(classes):
        take = np.maximum(take, 1)
    while take.sum() > n:  # only after raising empty classes to one row
        take[np.argmax(take - quota)] -= 1
    for k in np.argsort(-(quota - take), kind="stable")[: n - take.sum()]:
        take[k] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False)
              for c, k in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(chosen))


def network_features(network: nn.Module, x: torch.Tensor, batch_size: int = 128) -> np.ndarray:
    """``network.features(x)`` (the transfer features) in batches, float64 ``[N, feature_dim]``."""
    device = next(network.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size].to(device, dtype=torch.float32)
            out.append(network.features(batch).double().cpu())
    return torch.cat(out).numpy()


def embed_2d(features: np.ndarray, embedding: str = "isomap", seed: int = 0) -> np.ndarray:
    """A 2-D embedding ``[N, 2]`` of ``features [N, D]``.

    ``isomap``: scikit-learn ``Isomap(n_neighbors=min(5, N - 1), n_components=2)``;
    ``tsne``: ``TSNE(perplexity=min(30, N / 4), init="pca", random_state=seed)``.
    """
    from sklearn.manifold import TSNE, Isomap

    features = np.asarray(features, dtype=np.float64)
    n = len(features)
    if n < 3:
        raise ValueError(f"need at least 3 points to embed, got {n}")
    if embedding == "isomap":
        return Isomap(n_neighbors=min(ISOMAP_NEIGHBORS, n - 1),
                      n_components=2).fit_transform(features)
    if embedding == "tsne":
        return TSNE(n_components=2, perplexity=min(30.0, n / 4), init="pca",
                    random_state=seed).fit_transform(features)
    raise ValueError(f"unknown embedding {embedding!r}; valid: {', '.join(EMBEDDINGS)}")


@dataclass
class LatentSpace:
    """The 2-D embeddings of one model's transfer features of source and target test images.

    Attributes:
        method, label, color, problem: the model (as :class:`DiagnosticModel`).
        embeddings: ``{"isomap": [n, 2], "tsne": [n, 2]}``; source points first, then target.
        domain: ``"source"`` / ``"target"`` of each point.
        labels: class of each point (1 = merger).
        index: row of each point in its domain's test split.
    """

    method: str
    label: str
    color: str
    problem: str
    embeddings: dict[str, np.ndarray]
    domain: np.ndarray
    labels: np.ndarray
    index: np.ndarray

    def points(self, embedding: str, domain: str) -> np.ndarray:
        """The ``[n_domain, 2]`` points of ``domain`` in ``embedding``."""
        return self.embeddings[embedding][self.domain == domain]


def latent_space(entry: DiagnosticModel, max_per_domain: int = 300, seed: int = 0
                 ) -> LatentSpace:
    """Isomap and t-SNE embeddings of one model's features (module docstring).

    Each domain contributes ``min(max_per_domain, n_test)`` test images
    (:func:`stratified_subsample` with ``seed``), normalised with the model's statistics for
    that domain and passed through that domain's network.
    """
    features, domains, labels, indices = [], [], [], []
    for domain in DOMAINS:
        data = entry.test[domain]
        rows = stratified_subsample(data.labels, max_per_domain, seed)
        x = entry.model.normalize(data.images[rows], domain)
        features.append(network_features(entry.model.networks[domain], x))
        domains += [domain] * len(rows)
        labels.append(np.asarray(data.labels[rows], dtype=int))
        indices.append(rows)
    stacked = np.concatenate(features)
    embeddings = {name: embed_2d(stacked, name, seed) for name in EMBEDDINGS}
    return LatentSpace(entry.method, entry.label, entry.color, entry.problem, embeddings,
                       np.array(domains), np.concatenate(labels), np.concatenate(indices))


def latent_spaces(models: list[DiagnosticModel], max_per_domain: int = 300, seed: int = 0
                  ) -> list[LatentSpace]:
    """:func:`latent_space` of every model."""
    return [latent_space(entry, max_per_domain, seed) for entry in models]


def latent_figure(spaces: list[LatentSpace]) -> Figure:
    """One column per model; rows: Isomap by domain, Isomap by class, t-SNE by domain, by class.

    Every scatter is labelled (``"source"``/``"target"`` or ``"merger"``/``"non-merger"``) and
    has gid ``"<method>:<embedding>:<domain|class>:<value>"``, so that the points can be read
    back (``get_offsets()``).
    """
    ncols = max(len(spaces), 1)
    figure = new_figure(3.2 * ncols + 0.4, 3.0 * 2 * len(EMBEDDINGS))
    axes = figure.subplots(2 * len(EMBEDDINGS), ncols, squeeze=False)
    for col, space in enumerate(spaces):
        for e, embedding in enumerate(EMBEDDINGS):
            by_domain, by_class = axes[2 * e, col], axes[2 * e + 1, col]
            points = space.embeddings[embedding]
            for domain in DOMAINS:
                mask = space.domain == domain
                by_domain.scatter(points[mask, 0], points[mask, 1], s=8, alpha=0.6,
                                  color=DOMAIN_COLORS[domain], label=domain,
                                  gid=f"{space.method}:{embedding}:domain:{domain}")
            for cls in (0, 1):
                mask = space.labels == cls
                by_class.scatter(points[mask, 0], points[mask, 1], s=8, alpha=0.6,
                                 color=CLASS_COLORS[cls], label=CLASS_NAMES[cls],
                                 gid=f"{space.method}:{embedding}:class:{cls}")
            for ax, colouring in ((by_domain, "domain"), (by_class, "class")):
                ax.set_title(f"{space.label}: {EMBEDDING_LABELS[embedding]}, by {colouring}",
                             fontsize=9, color=space.color)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.legend(fontsize=7, markerscale=1.5, loc="best")
    if not spaces:
        axes[0, 0].text(0.5, 0.5, "no model with a checkpoint", ha="center",
                        transform=axes[0, 0].transAxes, color="0.5")
    figure.suptitle("transfer features of the test images (source and target)", fontsize=10)
    return figure


# --- Grad-CAM ------------------------------------------------------------------------------


def last_conv_layer(module: nn.Module) -> nn.Conv2d:
    """The last ``nn.Conv2d`` among ``module.modules()`` (registration order).

    Raises:
        ValueError: ``module`` holds no ``Conv2d``.
    """
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(module).__name__} holds no nn.Conv2d")
    return convs[-1]


def gradcam_maps(network: nn.Module, x: torch.Tensor, target: int = MERGER_CLASS,
                 layer: nn.Module | None = None) -> np.ndarray:
    """Grad-CAM maps (module docstring) of normalised images ``x [N, 3, H, W]``: ``[N, H, W]``.

    ``layer`` defaults to :func:`last_conv_layer` of ``network.backbone``. The network must be
    in eval mode (BatchNorm uses its running statistics); gradients are taken with respect to
    the layer output only (``torch.autograd.grad``), so no parameter or ``.grad`` changes.
    """
    from captum.attr import LayerAttribution, LayerGradCam  # ~2 s to import: only when used

    if network.training:
        raise ValueError("put the network in eval mode first (network.eval())")
    layer = last_conv_layer(network.backbone) if layer is None else layer
    device = next(network.parameters()).device
    x = torch.as_tensor(x, dtype=torch.float32).to(device)
    with torch.enable_grad():
        attribution = LayerGradCam(network, layer).attribute(x, target=target,
                                                             relu_attributions=True)
    upsampled = LayerAttribution.interpolate(attribution, tuple(x.shape[-2:]),
                                             interpolate_mode="bilinear")
    return upsampled[:, 0].detach().double().cpu().numpy()


def example_rows(labels: np.ndarray, n_examples: int = 2) -> np.ndarray:
    """The first ``n_examples`` mergers, then the first ``n_examples`` non-mergers (file order)."""
    labels = np.asarray(labels).ravel()
    return np.concatenate([np.flatnonzero(labels == cls)[:n_examples] for cls in (1, 0)])


@dataclass
class GradCam:
    """Grad-CAM maps of one model on the example images of each domain.

    Attributes:
        method, label, color, problem: the model.
        images: ``{domain: raw images [n, 3, 75, 75]}``.
        labels: ``{domain: classes [n]}``.
        index: ``{domain: rows in the test split [n]}``.
        p_merger: ``{domain: [n]}`` of that domain's network.
        maps: ``{domain: [n, 75, 75]}``, non-negative.
    """

    method: str
    label: str
    color: str
    problem: str
    images: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    index: dict[str, np.ndarray] = field(default_factory=dict)
    p_merger: dict[str, np.ndarray] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict)


def gradcam(models: list[DiagnosticModel], n_examples: int = 2) -> list[GradCam]:
    """Grad-CAM of the merger logit for :func:`example_rows` of each domain, per model."""
    out = []
    for entry in models:
        result = GradCam(entry.method, entry.label, entry.color, entry.problem)
        for domain in DOMAINS:
            data = entry.test[domain]
            rows = example_rows(data.labels, n_examples)
            x = entry.model.normalize(data.images[rows], domain)
            result.images[domain] = np.asarray(data.images[rows])
            result.labels[domain] = np.asarray(data.labels[rows], dtype=int)
            result.index[domain] = rows
            result.p_merger[domain] = entry.model.prob_merger(x, domain, normalized=True)
            result.maps[domain] = gradcam_maps(entry.model.networks[domain], x)
        out.append(result)
    return out


def gradcam_figure(results: list[GradCam]) -> Figure:
    """Rows = model × domain, columns = examples: F160W (channel 2) with the Grad-CAM map over it.

    The images are shown with a linear stretch between their 1st and 99.5th percentiles; each
    map is scaled to its own maximum. Map images have gid ``"<method>:<domain>:<k>"``.
    """
    rows = [(result, domain) for result in results for domain in DOMAINS]
    ncols = max([len(r.maps[d]) for r, d in rows] or [1])
    figure = new_figure(1.9 * ncols + 0.6, 2.0 * max(len(rows), 1))
    axes = figure.subplots(max(len(rows), 1), ncols, squeeze=False)
    for r, (result, domain) in enumerate(rows):
        for k in range(ncols):
            ax = axes[r, k]
            ax.set_xticks([])
            ax.set_yticks([])
            if k >= len(result.maps[domain]):
                ax.set_visible(False)
                continue
            image = result.images[domain][k, F160W_CHANNEL]
            low, high = np.percentile(image, [1, 99.5])
            ax.imshow(image, cmap="gray", vmin=low, vmax=high if high > low else low + 1)
            heat = result.maps[domain][k]
            ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=max(float(heat.max()), 1e-12),
                      gid=f"{result.method}:{domain}:{k}")
            ax.set_title(f"{CLASS_NAMES[int(result.labels[domain][k])]}, "
                         f"p={result.p_merger[domain][k]:.2f}", fontsize=8)
            if k == 0:
                ax.set_ylabel(f"{result.label}\n{domain}", fontsize=8, color=result.color)
    if not rows:
        axes[0, 0].text(0.5, 0.5, "no model with a checkpoint", ha="center",
                        transform=axes[0, 0].transAxes, color="0.5")
    figure.suptitle("Grad-CAM of the merger logit (last conv layer) on F160W", fontsize=10)
    return figure


# --- reliability ---------------------------------------------------------------------------


@dataclass
class Reliability:
    """Reliability curves of one trial's test predictions.

    Attributes:
        method, label, color, problem: the model.
        curves: ``{domain: apply.calibration.reliability_curve(...)}``.
        ece: ``{domain: apply.calibration.expected_calibration_error(...)}`` (15 bins).
    """

    method: str
    label: str
    color: str
    problem: str
    curves: dict[str, dict[str, list]]
    ece: dict[str, float]


def trial_reliability(trial_dir: str | os.PathLike, method: str, problem: str = "",
                      n_bins: int = RELIABILITY_BINS) -> Reliability:
    """Reliability curves and ECE of ``trial_dir/predictions.npz`` (test splits).

    Raises:
        FileNotFoundError: no ``predictions.npz``.
    """
    label, color = _method_info(method)
    curves, ece = {}, {}
    with np.load(Path(trial_dir) / "predictions.npz") as predictions:
        for domain in DOMAINS:
            labels = predictions[f"{domain}_test_label"]
            prob = predictions[f"{domain}_test_p_merger"]
            curves[domain] = reliability_curve(labels, prob, n_bins)
            ece[domain] = expected_calibration_error(labels, prob)
    return Reliability(method, label, color, problem, curves, ece)


def reliability(models: list[DiagnosticModel], n_bins: int = RELIABILITY_BINS
                ) -> list[Reliability]:
    """:func:`trial_reliability` of every model's trial."""
    return [trial_reliability(m.trial_dir, m.method, m.problem, n_bins) for m in models]


def reliability_figure(results: list[Reliability]) -> Figure:
    """One panel per model: observed merger fraction vs mean ``p_merger``; counts below.

    Source dashed, target solid (the method's colour), the diagonal dotted; the lines are
    labelled ``"<domain> (ECE x.xxx)"`` with gid ``"<method>:<domain>"`` and hold the
    non-empty bins; the count bars below are labelled ``"<method> <domain> count"``.
    """
    ncols = max(len(results), 1)
    figure = new_figure(3.4 * ncols + 0.4, 4.6)
    axes = figure.subplots(2, ncols, squeeze=False, height_ratios=[3, 1], sharex="col")
    for col, result in enumerate(results):
        top, bottom = axes[0, col], axes[1, col]
        top.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1)
        n_bins = len(result.curves[DOMAINS[0]]["count"])
        width = 1.0 / n_bins / 2
        for d, (domain, style) in enumerate(zip(DOMAINS, ("--", "-"), strict=True)):
            curve = result.curves[domain]
            filled = [i for i, f in enumerate(curve["fraction"]) if f is not None]
            top.plot([curve["mean_prob"][i] for i in filled],
                     [curve["fraction"][i] for i in filled], linestyle=style, marker="o",
                     markersize=3, color=result.color, gid=f"{result.method}:{domain}",
                     label=f"{domain} (ECE {result.ece[domain]:.3f})")
            left = np.asarray(curve["edges"][:-1]) + d * width
            bottom.bar(left, curve["count"], width, align="edge", color=result.color,
                       alpha=0.4 if domain == "source" else 0.9,
                       gid=f"{result.method}:{domain}:count",
                       label=f"{result.method} {domain} count")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1.01)
        top.set_ylabel("observed merger fraction")
        top.set_title(result.label, fontsize=10, color=result.color)
        top.legend(fontsize=7, loc="upper left")
        bottom.set_xlabel("p_merger")
        bottom.set_ylabel("count")
    if not results:
        axes[0, 0].text(0.5, 0.5, "no results", ha="center", transform=axes[0, 0].transAxes,
                        color="0.5")
    figure.suptitle("reliability (test): source dashed, target solid; bars: source light, "
                    "target dark", fontsize=10)
    return figure


# --- all of it -----------------------------------------------------------------------------


def diagnostics_figures(frame: pd.DataFrame, out_dir: str | os.PathLike,
                        strategy: str | Strategy = DEFAULT_STRATEGY, max_per_domain: int = 300,
                        n_examples: int = 2, device: str = "cpu") -> list[Path]:
    """Write the three diagnostics of every backbone's selected trials; return the files.

    For each registered backbone with at least one selected trial that loads
    (:func:`diagnostic_models`): ``out_dir/figures/latent_<backbone>.{png,pdf}``,
    ``gradcam_<backbone>.{png,pdf}`` and ``reliability_<backbone>.{png,pdf}`` (names from the
    registered backbone names only). PNG then PDF, figure by figure.
    """
    fig_dir = Path(out_dir) / "figures"
    cache: dict[Path, dict[str, DomainData]] = {}
    paths: list[Path] = []
    for spec in backbone_specs():
        models = diagnostic_models(frame, spec.name, strategy, device, cache)
        if not models:
            continue
        paths += save_figure(latent_figure(latent_spaces(models, max_per_domain)),
                             fig_dir / f"latent_{spec.name}")
        paths += save_figure(gradcam_figure(gradcam(models, n_examples)),
                             fig_dir / f"gradcam_{spec.name}")
        paths += save_figure(reliability_figure(reliability(models)),
                             fig_dir / f"reliability_{spec.name}")
    return paths


def figure_title(path: str | os.PathLike) -> str:
    """Link text of a diagnostics figure, e.g. ``"latent space (Isomap, t-SNE), DeepMerge"``."""
    kind, _, backbone = Path(path).stem.partition("_")
    titles = {"latent": "latent space (Isomap, t-SNE)", "gradcam": "Grad-CAM",
              "reliability": "reliability diagram"}
    return f"{titles.get(kind, kind)}, {backbone_labels().get(backbone, backbone)}"


__all__ = [
    "DiagnosticModel", "DiagnosticsWarning", "GradCam", "LatentSpace", "Reliability",
    "diagnostic_models", "diagnostics_figures", "embed_2d", "example_rows", "figure_title",
    "gradcam", "gradcam_figure", "gradcam_maps", "last_conv_layer", "latent_figure",
    "latent_space", "latent_spaces", "network_features", "reliability",
    "reliability_figure", "stratified_subsample", "trial_reliability",
]
