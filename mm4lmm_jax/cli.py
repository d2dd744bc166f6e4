"""Command line: ``mm4lmm example`` (MM4LMM's two example data sets and a GWAS of the bundled PLINK
example) and ``mm4lmm gwas`` (exact mixed-model scans of PLINK files)."""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd


def run_example(out=None) -> None:
    """Fit QTLDetectionExample (marker scan) and VarianceComponentExample (3 components),
    with Wald and Kenward-Roger tests and the variance components' standard errors."""
    from . import anova_test, datasets, mmest, mmvcov

    out = out or sys.stdout

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

    run_gwas_example(out, fmt)


def run_gwas_example(out=None, fmt=None) -> None:
    """Scan the bundled PLINK example (standardised GRM of all markers, covariates age and sex)
    and print the top markers."""
    import warnings

    out = out or sys.stdout
    from . import datasets, gwas

    ex = datasets.gwas_example()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gwas(ex.pheno, ex.prefix, covariates=ex.covar, pheno_names=["trait1"], progress=False)
    a = res.attrs
    print(
        f"\n== GWAS example: {a['n_analysed']['trait1']} individuals, {len(res)} markers, standardised GRM, "
        f"covariates {', '.join(a['covariates'][1:])}, exact ReML per marker ==",
        file=out,
    )
    top = res.nsmallest(5, "p_wald")[["chr", "snp", "pos", "af", "beta", "se", "p_wald", "h2", "n_iter"]]
    print(top.to_string(index=False, **(fmt or {})), file=out)
    print(f"genomic inflation lambda_GC = {a['lambda_gc']['trait1']:.3f}", file=out)


def _enable_compilation_cache() -> None:
    """Keep compiled programs between runs (``MM4LMM_JAX_CACHE``; empty disables)."""
    import os

    import jax

    path = os.environ.get("MM4LMM_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "mm4lmm_jax", "xla"))
    if path:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def run_gwas(args, out=None) -> int:
    """The ``gwas`` subcommand: scan, write ``PREFIX.tsv`` (and Parquet, plots), print a summary."""
    import time
    import warnings

    from . import gwas
    from .errors import MissingDataWarning
    from .gwas.io import InputError, write_tsv

    out = out or sys.stdout
    _enable_compilation_cache()
    kinship = args.kinship
    if kinship is None and not args.grm and not args.loco:
        raise InputError("give --kinship FILE, or --grm / --loco to compute it from the genotypes")
    start = time.perf_counter()
    client = _dask_client(args.scheduler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MissingDataWarning)  # the summary below reports the drops
            res = gwas(
                args.pheno,
                args.bfile,
                kinship=kinship,
                covariates=args.covar,
                pheno_names=args.pheno_name or None,
                covar_names=args.covar_name or None,
                loco=args.loco,
                lrt=args.lrt,
                chunk_size=args.chunk_size,
                rotation_dtype="float64" if args.float64 else "float32",
                devices=args.devices,
                client=client,
                progress=not args.quiet,
            )
    finally:
        if client is not None:
            client.close()
    elapsed = time.perf_counter() - start
    path = f"{args.out}.tsv"
    write_tsv(res, path)
    written = [path]
    if args.parquet:
        res.to_parquet(f"{args.out}.parquet", index=False)
        written.append(f"{args.out}.parquet")
    traits = list(res.attrs["lambda_gc"])
    if not args.no_plots:
        from .plots import save_plots

        for trait in traits:
            part = res[res["trait"] == trait] if "trait" in res else res
            written += save_plots(part, args.out, trait if len(traits) > 1 else None)
    a = res.attrs
    print(
        f"mm4lmm gwas: {a['n_analysed']} individuals analysed ({a['n_dropped_missing']} dropped for a missing "
        f"phenotype or covariate), {len(res) // len(traits)} markers, {len(traits)} trait(s) in {elapsed:.1f} s",
        file=out,
    )
    for trait in traits:
        part = res[res["trait"] == trait] if "trait" in res else res
        counts = part["status"].value_counts()
        print(
            f"  {trait}: lambda_GC = {a['lambda_gc'][trait]:.4f}, min p_wald = {part['p_wald'].min():.3g}, "
            + ", ".join(f"{k}: {v}" for k, v in counts.items() if v),
            file=out,
        )
    print("written: " + ", ".join(written), file=out)
    return 0


def _dask_client(address: str | None):
    if not address:
        return None
    from distributed import Client

    return Client(address)


def _add_gwas_parser(sub) -> None:
    p = sub.add_parser(
        "gwas",
        help="exact mixed-model GWAS scan of PLINK genotypes (kinship + error, ReML, Wald test)",
        description="For every marker (and trait), fit y = covariates + marker + u + e by ReML with "
        "u ~ N(0, s2_g K), e ~ N(0, s2_e I) (variance components re-estimated per marker, like "
        "GEMMA -lmm 1), and test the marker by Wald (F test as GEMMA; chi-square p too). Missing "
        "genotypes are mean-imputed per marker over the analysed individuals.",
    )
    p.add_argument("--bfile", required=True, metavar="PREFIX", help="PLINK 1 PREFIX.bed/.bim/.fam (A1 counted)")
    p.add_argument(
        "--pheno",
        required=True,
        metavar="FILE",
        help="phenotypes: tab/space separated, header 'FID IID <trait> ...'; NA or -9 missing",
    )
    p.add_argument(
        "--pheno-name", action="append", metavar="COL", help="trait column(s) to scan (repeat; default: all)"
    )
    p.add_argument(
        "--covar",
        metavar="FILE",
        help="covariates: same format as --pheno; an intercept is always added (unlike GEMMA's -c, "
        "do not include a column of ones)",
    )
    p.add_argument("--covar-name", action="append", metavar="COL", help="covariate column(s) to use (default: all)")
    kin = p.add_mutually_exclusive_group()
    kin.add_argument(
        "--kinship",
        metavar="FILE",
        help="kinship: GEMMA's format (n x n text, no header, rows in .fam order) or .npy",
    )
    kin.add_argument("--grm", action="store_true", help="compute the standardised GRM from all markers")
    p.add_argument(
        "--loco",
        action="store_true",
        help="leave one chromosome out: test each chromosome with a GRM of the others (implies --grm)",
    )
    p.add_argument("--lrt", action="store_true", help="also fit ML models and report the likelihood-ratio test")
    p.add_argument("--chunk-size", type=int, default=2048, metavar="N", help="markers per block (default 2048)")
    p.add_argument("--float64", action="store_true", help="rotate genotypes in float64 (default float32)")
    p.add_argument("--devices", type=int, metavar="N", help="local JAX devices to use (default: all)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run blocks on a Dask cluster (scheduler address)")
    p.add_argument("--parquet", action="store_true", help="also write PREFIX.parquet")
    p.add_argument("--no-plots", action="store_true", help="do not write the Manhattan and QQ plots")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--out", required=True, metavar="PREFIX", help="output prefix: PREFIX.tsv, PREFIX.manhattan.png, ..."
    )


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
    _add_gwas_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "example":
        run_example()
        return 0
    from .gwas.io import InputError

    try:
        return run_gwas(args)
    except (InputError, FileNotFoundError, ValueError) as err:
        print(f"mm4lmm gwas: error: {err}", file=sys.stderr)
        return 2


def entry() -> None:  # pragma: no cover - the console script; tests call main()
    """``mm4lmm``: run :func:`main`, then end the process without the interpreter's teardown
    (shutting JAX's runtime down takes about 0.2 s; every output file is closed by then)."""
    import logging
    import os

    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(rc)


if __name__ == "__main__":  # pragma: no cover
    entry()
