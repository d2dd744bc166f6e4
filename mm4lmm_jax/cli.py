"""Command line: ``mm4lmm example`` fits MM4LMM's two example data sets."""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd


def _wald_table(fit) -> pd.DataFrame:
    """Per-term Wald (Type III style) tests of one model, from its coefficients."""
    from .inference.wald import wald_test

    rows = []
    attr = np.asarray(fit.attr)
    for term in sorted(set(attr.tolist())):
        sel = np.eye(len(attr))[attr == term]
        stat, df, p = wald_test(fit.beta.to_numpy(), fit.var_beta.to_numpy(), sel)
        label = "(Intercept)" if term == 0 else fit.factors[term - 1]
        rows.append((label, float(stat), df, float(p)))
    return pd.DataFrame(rows, columns=["term", "Wald", "df", "pval"]).set_index("term")


def run_example(out=sys.stdout) -> None:
    """Fit QTLDetectionExample (marker scan) and VarianceComponentExample (3 components)."""
    from . import datasets, mmest

    pd.set_option("display.width", 120)
    q = datasets.load_qtl_detection_example()
    n = q.pheno.size
    scan = mmest(q.pheno, x=q.geno, var_list={"Additive": q.kinship, "Error": np.eye(n)}, verbose=False)
    print("== QTLDetectionExample: marker scan, Additive kinship + Error, ReML ==", file=out)
    frame = scan.to_frame()
    tests = pd.DataFrame({nm: _wald_table(scan[nm]).loc["Xeffect"] for nm in scan.names}).T
    table = frame[["sigma2[Additive]", "sigma2[Error]", "beta[Xeffect]", "se[Xeffect]", "loglik"]].join(
        tests[["Wald", "pval"]]
    )
    print(table.to_string(float_format=lambda v: f"{v:.6g}"), file=out)

    v = datasets.load_variance_component_example()
    n = len(v.data)
    comps = {"Flint": v.kinship_flint, "Dent": v.kinship_dent, "Error": np.eye(n)}
    zs = {"Flint": v.z_flint, "Dent": v.z_dent, "Error": np.eye(n)}
    fit = mmest(
        v.data["Trait"], cofactor=v.data[["Trial"]], formula="~ Trial", var_list=comps, z_list=zs, verbose=False
    )[0]
    print("\n== VarianceComponentExample: Flint + Dent + Error, Trial as cofactor, ReML ==", file=out)
    print(f"path: Henderson's equations, {fit.n_iter} iterations, converged={fit.converged}", file=out)
    print(f"log-likelihood (ReML, lme4 convention): {fit.loglik:.6f}", file=out)
    print("variance components:", file=out)
    print(fit.sigma2.to_string(float_format=lambda v: f"{v:.6g}"), file=out)
    print("fixed effects:", file=out)
    print(pd.DataFrame({"beta": fit.beta, "se": fit.se}).to_string(float_format=lambda v: f"{v:.6g}"), file=out)
    print("Wald tests:", file=out)
    print(_wald_table(fit).to_string(float_format=lambda v: f"{v:.6g}"), file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mm4lmm",
        description="Variance-component linear mixed models (ReML/ML, MM algorithm) in JAX.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "example",
        help="fit MM4LMM's QTLDetectionExample scan and VarianceComponentExample model",
        description="Fit the bundled QTLDetectionExample marker scan and the VarianceComponentExample "
        "three-component model; print variance components, coefficients and Wald tests.",
    )
    args = parser.parse_args(argv)
    if args.command == "example":
        run_example()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
