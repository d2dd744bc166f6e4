"""Load the MM4LMM reference cases in ``tests/fixtures`` and turn them into ``mmest`` calls.

Each ``<case>/case.json.gz`` holds MM4LMM 3.0.3's inputs and outputs (see ``fixtures/README.md``).
"""

from __future__ import annotations

import functools
import gzip
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def case_names() -> list[str]:
    return sorted(p.parent.name for p in FIXTURES.glob("*/case.json.gz"))


def load_case(name: str) -> dict:
    with gzip.open(FIXTURES / name / "case.json.gz", "rt") as fh:
        return json.load(fh)


def _matrix(obj):
    if obj is None:
        return None
    if isinstance(obj, dict):
        data = np.asarray(obj["data"])
        if obj.get("rownames") and data.dtype.kind in "fiu":
            return pd.DataFrame(
                data.astype(float), index=obj["rownames"], columns=obj.get("colnames") or obj["rownames"]
            )
        return data
    return np.asarray(obj, dtype=float)


def mmest_kwargs(case: dict) -> dict:
    """The ``mmest`` arguments that reproduce the MM4LMM call of ``case`` (MM's iterations:
    ``algorithm="mm"``, also where tight criteria would choose the exact engines)."""
    a, inp = case["args"], case["inputs"]
    y = np.asarray(inp["y"], dtype=float)
    n = y.size
    names = a["var_names"] if isinstance(a["var_names"], list) else [a["var_names"]]
    var_list, z_list = {}, None
    for nm in names:
        v = _matrix(inp["var_list"].get(nm)) if inp.get("var_list") else None
        if v is None:
            z = inp.get("z_list", {}).get(nm) if inp.get("z_list") else None
            q = n if z is None else np.asarray(z["data"] if isinstance(z, dict) else z).shape[1]
            v = np.eye(q)
        var_list[nm] = v
    if a.get("z_list"):
        z_list = {}
        for nm in names:
            z = inp["z_list"].get(nm)
            z_list[nm] = np.eye(n) if z is None else np.asarray(z["data"] if isinstance(z, dict) else z, dtype=float)
    kw = dict(
        y=y,
        var_list=var_list,
        z_list=z_list,
        method=a["method"],
        crit_var=a["crit_var"],
        crit_loglik=a["crit_loglik"],
        max_iter=a["max_iter"],
        henderson=a.get("henderson"),
        verbose=False,
        algorithm="mm",
    )
    kind = a["cofactor_kind"]
    if kind == "matrix":
        if "cofactor" in inp:
            kw["cofactor"] = np.asarray(inp["cofactor"], dtype=float)
        else:  # the hybrid cases: matrix(Trial), a character matrix
            kw["cofactor"] = np.array([[r["Trial"]] for r in inp["frame"]], dtype=object)
    elif kind == "frame":
        frame = pd.DataFrame(inp["frame"])
        terms = [t.strip() for t in a["formula"].split("~")[1].split("+")]
        cols = sorted({v.strip() for t in terms for v in t.split(":")} - {"Xeffect"})
        kw["cofactor"] = frame[cols]
        kw["formula"] = a["formula"]
    xk = a["x_kind"]
    if xk in ("matrix", "character"):
        x = inp["x"]
        data = np.asarray(x["data"])
        cols = x.get("colnames")
        kw["x"] = pd.DataFrame(data, columns=cols) if cols else data
    elif xk == "list":
        kw["x"] = {
            k: pd.DataFrame(np.asarray(v["data"], dtype=float), columns=v.get("colnames"))
            for k, v in inp["x_list"].items()
        }
    return kw


def expected_models(case: dict) -> list[dict]:
    return case["expected"]["models"]


def as_vector(obj) -> np.ndarray:
    return np.asarray(list(obj.values()) if isinstance(obj, dict) else obj, dtype=float).ravel()


@functools.cache
def fit_case(name: str):
    """``mmest`` on case ``name``, computed once per test session (fits are immutable)."""
    import mm4lmm_jax as mj

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mj.mmest(**mmest_kwargs(load_case(name)))
