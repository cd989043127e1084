"""Example images of a benchmark folder: both classes in both domains.

Rows: source merger, source non-merger, target merger, target non-merger (the target rows
show the same galaxies as the source rows when the target reuses the source galaxies).
Each panel is an RGB composite (R = WFC3 F160W, G = NIRCam F356W, B = ACS F814W) with an
asinh stretch shared by all panels, so the noise level of the two domains can be compared.

Usage::

    python galaxies/plot.py --data DIR --out PNG [--n-per-class 4]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from galaxies.schema import LABELS, domain_paths, load_domain_arrays  # noqa: E402

RGB_ORDER = (2, 1, 0)  # F160W, F356W, F814W -> R, G, B


def asinh_rgb(image: np.ndarray, soft: float, top: float) -> np.ndarray:
    """[3, H, W] image -> [H, W, 3] RGB in [0, 1] with an asinh stretch."""
    rgb = np.moveaxis(image[list(RGB_ORDER)], 0, -1).astype(np.float64)
    scaled = np.arcsinh(np.clip(rgb, 0.0, None) / soft) / np.arcsinh(top / soft)
    return np.clip(scaled, 0.0, 1.0)


def plot_examples(data_dir: str | os.PathLike, out_png: str | os.PathLike,
                  n_per_class: int = 4) -> Path:
    """Plot ``n_per_class`` galaxies of each class in each domain into ``out_png``.

    The same galaxies (first original copy of the first ``n_per_class`` galaxies of each
    class) are shown in both domains.

    Returns:
        The path of the PNG.
    """
    paths = domain_paths(data_dir)
    domains = {name: load_domain_arrays(path) for name, path in paths.items()}
    source = domains["source"]
    rows = []
    for domain in ("source", "target"):
        data = domains[domain]
        for label in (1, 0):
            _, first = np.unique(data.galaxy_id, return_index=True)
            picks = [i for i in sorted(first) if data.labels[i] == label][:n_per_class]
            rows.append((f"{domain}\n{LABELS[label]}", data.images[picks]))
    top = float(np.percentile(source.images[source.labels == 1].max(axis=(2, 3)), 50))
    sigma = domains["target"].attrs.get("noise_sigma", [0.0])[0]
    soft = max(float(sigma), 1e-3 * top)
    fig, axes = plt.subplots(len(rows), n_per_class, figsize=(1.6 * n_per_class, 1.6 * len(rows)),
                             squeeze=False)
    for r, (title, images) in enumerate(rows):
        for c in range(n_per_class):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(asinh_rgb(images[c], soft, top), origin="lower")
            if c == 0:
                ax.set_ylabel(title, fontsize=8)
    attrs = domains["target"].attrs
    widening = attrs.get("target_psf_scale")  # simulate.py --target-psf-scale, when not 1
    psf_note = ("; target PSF FWHM x " + ", ".join(f"{x:g}" for x in widening)
                if widening is not None else "")
    fig.suptitle(f"RGB = F160W/F356W/F814W, asinh; target noise: SB_lim = "
                 f"{attrs.get('limiting_sb_mag_arcsec2', '?')} mag/arcsec$^2${psf_note}",
                 fontsize=8)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description="Plot example images of a benchmark folder.")
    parser.add_argument("--data", required=True, type=Path, help="folder with source/target.h5")
    parser.add_argument("--out", required=True, type=Path, help="PNG to write")
    parser.add_argument("--n-per-class", type=int, default=4)
    args = parser.parse_args(argv)
    missing = [str(p) for p in domain_paths(args.data).values() if not p.exists()]
    if missing:
        parser.error(f"missing {', '.join(missing)}. Fix: run python galaxies/simulate.py "
                     f"--out {args.data} first")
    if args.n_per_class < 1:
        parser.error("--n-per-class must be at least 1. Fix: pass e.g. --n-per-class 4")
    print(plot_examples(args.data, args.out, args.n_per_class))
    return 0


if __name__ == "__main__":
    sys.exit(main())
