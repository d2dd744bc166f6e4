"""Manhattan and QQ plots of GWAS results (matplotlib, optional dependency ``[plot]``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .gwas._scan import genomic_inflation


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError("plots need matplotlib: pip install 'mm4lmm_jax[plot]'") from err
    return plt


def manhattan(results: pd.DataFrame, pvalue: str = "p_wald", ax=None, threshold: float | None = None, title=None):
    """Manhattan plot: ``-log10 p`` along the genome, chromosomes in alternating colours.

    ``results`` a :func:`~mm4lmm_jax.gwas` frame (one trait); ``threshold`` a p-value line
    (default Bonferroni 0.05 / number of tested markers).  Returns the axes.
    """
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3.5))
    ok = results[np.isfinite(results[pvalue])]
    chroms = list(pd.unique(ok["chr"].astype(str)))
    offset = 0.0
    ticks = []
    for i, c in enumerate(chroms):
        part = ok[ok["chr"].astype(str) == c]
        pos = part["pos"].to_numpy(dtype=float)
        pos = np.arange(len(part), dtype=float) if not np.isfinite(pos).all() else pos - np.nanmin(pos)
        ax.scatter(offset + pos, -np.log10(part[pvalue]), s=4, color=("#1f4e79", "#7fa7d1")[i % 2], rasterized=True)
        ticks.append(offset + (pos.max() if len(pos) else 0) / 2)
        offset += (pos.max() if len(pos) else 0) * 1.02 + 1
    if threshold is None and len(ok):
        threshold = 0.05 / len(ok)
    if threshold:
        ax.axhline(-np.log10(threshold), color="#c0392b", lw=0.8, ls="--")
    ax.set_xticks(ticks, chroms)
    ax.set_xlabel("chromosome")
    ax.set_ylabel(f"-log10 {pvalue}")
    if title:
        ax.set_title(title)
    return ax


def qq(results: pd.DataFrame, pvalue: str = "p_wald", stat: str = "stat", ax=None, title=None):
    """QQ plot of ``-log10 p`` against its uniform expectation, with the genomic inflation
    ``lambda = median(stat) / 0.455`` in the legend.  Returns the axes."""
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    p = np.sort(results[pvalue].to_numpy(dtype=float))
    p = p[np.isfinite(p)]
    expected = -np.log10((np.arange(1, p.size + 1) - 0.5) / p.size)
    lam = genomic_inflation(results[stat])
    ax.scatter(expected, -np.log10(p), s=4, color="#1f4e79", label=f"lambda = {lam:.3f}", rasterized=True)
    top = max(expected.max() if p.size else 1, 1)
    ax.plot([0, top], [0, top], color="#c0392b", lw=0.8)
    ax.set_xlabel("expected -log10 p")
    ax.set_ylabel(f"observed -log10 {pvalue}")
    ax.legend(loc="upper left", frameon=False)
    if title:
        ax.set_title(title)
    return ax


def save_plots(results: pd.DataFrame, prefix: str, trait: str | None = None) -> list[str]:
    """Write ``PREFIX[.trait].manhattan.png`` and ``.qq.png``; returns the paths."""
    plt = _pyplot()
    tag = f".{trait}" if trait else ""
    paths = []
    for kind, draw, size in (("manhattan", manhattan, (10, 3.5)), ("qq", qq, (4.2, 4.2))):
        fig, ax = plt.subplots(figsize=size)
        draw(results, ax=ax, title=trait)
        fig.tight_layout()
        paths.append(f"{prefix}{tag}.{kind}.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


__all__ = [
    "manhattan",
    "qq",
    "save_plots",
]
