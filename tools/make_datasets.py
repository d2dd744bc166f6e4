"""Build the bundled example data sets from the MM4LMM reference fixtures.

Run from the repository root: ``python tools/make_datasets.py``.  Writes
``mm4lmm_jax/datasets/data/*.npz`` (numbers exactly as in MM4LMM's example data).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from fixture_cases import load_case  # noqa: E402

OUT = ROOT / "mm4lmm_jax" / "datasets" / "data"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    qtl = load_case("qtl_scan_reml")["inputs"]
    np.savez_compressed(
        OUT / "qtl_detection_example.npz",
        pheno=np.asarray(qtl["y"], dtype=float),
        ind_names=np.asarray(qtl["y_names"]),
        geno=np.asarray(qtl["x"]["data"], dtype=float),
        marker_names=np.asarray(qtl["x"]["colnames"]),
        kinship=np.asarray(qtl["var_list"]["Additive"], dtype=float),
    )
    hyb = load_case("hybrid_markers_interaction")["inputs"]
    frame = pd.DataFrame(hyb["frame"])
    flint, dent = hyb["var_list"]["Flint"], hyb["var_list"]["Dent"]
    np.savez_compressed(
        OUT / "variance_component_example.npz",
        **{f"data_{c}": frame[c].to_numpy(dtype=float if c == "Trait" else str) for c in frame.columns},
        kinship_flint=np.asarray(flint["data"], dtype=float),
        flint_names=np.asarray(flint["rownames"]),
        kinship_dent=np.asarray(dent["data"], dtype=float),
        dent_names=np.asarray(dent["rownames"]),
        markers=np.asarray(hyb["x"]["data"]).astype(str),
    )
    for f in sorted(OUT.glob("*.npz")):
        print(f.name, f.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
