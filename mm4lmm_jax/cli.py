"""Command line: ``mm4lmm example`` fits MM4LMM's two example data sets."""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd


def run_example(out=sys.stdout) -> None:
    """Fit QTLDetectionExample (marker scan) and VarianceComponentExample (3 components),
    with Wald and Kenward-Roger tests and the variance components' standard errors."""
    from . import anova_test, datasets, mmest, mmvcov

    pd.set_option("display.width", 120)
    fmt = {"float_format": lambda v: f"{v:.6g}"}
    q = datasets.load_qtl_detection_example()
    n = q.pheno.size
    scan = mmest(q.pheno, x=q.geno, var_list={"Additive": q.kinship, "Error": np.eye(n)}, verbose=False)
    print("== QTLDetectionExample: marker scan, Additive kinship + Error, ReML ==", file=out)
    marker = {"Xeffect": np.array([[0.0, 1.0]])}
    wald = anova_test(scan, marker)
    kr = anova_test(scan, marker, type="KR")
    frame = scan.to_frame()[["sigma2[Additive]", "sigma2[Error]", "beta[Xeffect]", "se[Xeffect]", "loglik"]]
    frame["Wald"] = wald.column("Wald")["Xeffect"]
    frame["pval"] = wald.column("pval")["Xeffect"]
    frame["F (KR)"] = kr.column("F")["Xeffect"]
    frame["ddf (KR)"] = kr.column("ddf")["Xeffect"]
    frame["pval (KR)"] = kr.column("pval")["Xeffect"]
    print(frame.to_string(**fmt), file=out)

    v = datasets.load_variance_component_example()
    n = len(v.data)
    comps = {"Flint": v.kinship_flint, "Dent": v.kinship_dent, "Error": np.eye(n)}
    zs = {"Flint": v.z_flint, "Dent": v.z_dent, "Error": np.eye(n)}
    res = mmest(
        v.data["Trait"], cofactor=v.data[["Trial"]], formula="~ Trial", var_list=comps, z_list=zs, verbose=False
    )
    fit = res[0]
    print("\n== VarianceComponentExample: Flint + Dent + Error, Trial as cofactor, ReML ==", file=out)
    print(f"path: Henderson's equations, {fit.n_iter} iterations, converged={fit.converged}", file=out)
    print(f"log-likelihood (ReML, lme4 convention): {fit.loglik:.6f}", file=out)
    print("variance components (SE from the expected and average information):", file=out)
    table = pd.DataFrame(
        {"sigma2": fit.sigma2, "se (expected)": mmvcov(res).se, "se (AI)": mmvcov(res, information="ai").se}
    )
    print(table.to_string(**fmt), file=out)
    print("fixed effects:", file=out)
    print(pd.DataFrame({"beta": fit.beta, "se": fit.se}).to_string(**fmt), file=out)
    print("Wald (Type III) and Kenward-Roger tests:", file=out)
    tests = pd.concat([anova_test(res)[0], anova_test(res, type="KR")[0].add_suffix(" (KR)")], axis=1)
    print(tests.to_string(**fmt), file=out)


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
        "three-component model; print variance components with SEs, coefficients, Wald and "
        "Kenward-Roger tests.",
    )
    args = parser.parse_args(argv)
    if args.command == "example":
        run_example()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
