"""Command line: ``mm4lmm example`` (MM4LMM's two example data sets and a GWAS of the bundled PLINK
example), ``mm4lmm gwas`` (exact mixed-model scans of PLINK 1/2, BGEN, VCF or BIMBAM files) and
``mm4lmm grm`` (kinships from genotypes)."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ._cli_args import add_genotype_args, add_selection_args, genotype_path, open_source, selection
from .errors import MissingDataWarning
from .gwas._io import write_atomic
from .gwas._select import selection_lines


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


def _enable_compilation_cache() -> dict:
    """Keep compiled programs between runs (:func:`mm4lmm_jax.enable_compilation_cache`;
    ``MM4LMM_JAX_CACHE=off`` disables).

    Returns the caller's settings, which :func:`main` puts back when the run ends: called
    in-process (a notebook, a test), a run leaves JAX's configuration as it found it."""
    from ._cache import cache_settings, enable_compilation_cache

    before = cache_settings()
    enable_compilation_cache()
    return before


#: Endings of every file a scan writes (table formats, metadata, plots).
_OUTPUT_ENDINGS = (
    ".tsv", ".tsv.gz", ".tsv.gz-meta.yaml", ".assoc.txt", ".assoc.txt.gz", ".parquet", ".manhattan.png", ".qq.png"
)  # fmt: skip


def _outputs(prefix: str) -> list[str]:
    """Every file a scan with this prefix may have written (for the stale-output clean-up):
    ``PREFIX<ending>`` and ``PREFIX.<trait><ending>``."""
    names = [f"{prefix}{e}" for e in _OUTPUT_ENDINGS]
    folder = os.path.dirname(prefix)
    base = os.path.basename(prefix)
    if os.path.isdir(folder or "."):
        names += [
            os.path.join(folder, f)
            for f in os.listdir(folder or ".")
            if f.startswith(base + ".") and f.endswith(_OUTPUT_ENDINGS)
        ]
    return list(dict.fromkeys(os.path.normpath(f) for f in names))  # one entry per file, however spelled


def _split_out(out: str) -> tuple[str, bool]:
    """``--out``: a prefix, or a table name ending in ``.tsv`` / ``.tsv.gz`` (compressed output)."""
    for ending, gz in ((".tsv.gz", True), (".tsv", False)):
        if out.endswith(ending):
            return out[: -len(ending)], gz
    return out, False


def check_writable(prefix: str) -> None:
    """Fail in seconds (one line) when ``PREFIX.*`` cannot be written: a missing folder, a
    folder without write permission, a prefix that names a folder."""
    from .errors import InputError

    folder = os.path.dirname(os.path.abspath(prefix))
    if os.path.isdir(prefix):
        raise InputError(f"--out {prefix}: is a folder; give a prefix such as {os.path.join(prefix, 'gwas')}")
    if not os.path.isdir(folder):
        raise InputError(f"--out {prefix}: the folder {folder} does not exist (create it first)")
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".mm4lmm-write-test-"):
            pass
    except OSError as err:
        raise InputError(f"--out {prefix}: cannot write in {folder} ({err.strerror or err})") from err


class RunLog:
    """``PREFIX.log``, as PLINK 2 writes one: opened at the start, each line flushed, a last
    line when the run completed."""

    def __init__(self, path: str):
        self.path = path
        self._fh = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def line(self, text: str = "") -> None:
        self._fh.write(text + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _log_header(log: RunLog, argv) -> None:
    import platform

    import jax

    from . import __version__

    log.line(f"mm4lmm gwas (mm4lmm_jax {__version__})")
    log.line("command: mm4lmm " + " ".join(shlex.quote(a) for a in argv))
    log.line(f"started: {time.strftime('%Y-%m-%d %H:%M:%S')} on {platform.node()}")
    log.line(
        f"versions: python {platform.python_version()}, jax {jax.__version__}, numpy {np.__version__}, "
        f"pandas {pd.__version__}"
    )


def _log_results(log: RunLog, res: pd.DataFrame, timings: dict, caught, args) -> None:
    a = res.attrs
    log.line(
        f"inputs: genotypes {genotype_path(args)} ({a['n_genotyped']} individuals, {a['n_markers']} markers), "
        "phenotypes "
        f"{args.pheno}, covariates {args.covar or 'none'}, "
        f"kinship {', '.join(args.kinship) if args.kinship else 'from the genotypes'}; "
        f"{a['n_phenotyped_not_genotyped']} phenotyped and {a['n_covariates_not_genotyped']} with covariates "
        "but not genotyped"
    )
    for line in selection_lines(a["selection"]):
        log.line(line)
    log.line(f"covariates: {', '.join(a['covariates'])} (intercept always added)")
    log.line(f"kinship: {a['kinship']}; rotation in {a['rotation_dtype']}")
    tests = ["Wald"] + (["Kenward-Roger"] if args.test == "kr" else []) + (["LRT"] if args.lrt else [])
    log.line(f"tests of each marker: {', '.join(tests)}")
    for key, spec in a["kinship_spectrum"].items():
        log.line(
            f"kinship eigenvalues ({key}): largest {spec['largest']:.6g}, {spec['near_zero']} near zero, "
            f"{spec['negative_clipped']} negative set to 0"
        )
    log.line(f"missingness patterns (traits sharing a rotation): {a['missingness_patterns']}")
    for trait, n in a["n_analysed"].items():
        log.line(f"trait {trait}: {n} individuals analysed, {a['n_dropped_missing'][trait]} dropped (missing)")
        for label, null in a["null_models"][trait].items():
            log.line(
                f"  null model ({'all markers' if label == 'all' else 'without chromosome ' + label}): "
                f"sigma2_g = {null['sigma2_g']:.6g}, sigma2_e = {null['sigma2_e']:.6g}, "
                f"h2 = {null['h2']:.6g} (SE {null['h2_se']:.4g}; trace of K as given), pve = {null['pve_gemma']:.6g} "
                f"(SE {null['pve_gemma_se']:.4g}; GEMMA's: K centred over the analysed), ReML log-likelihood = "
                f"{null['loglik']:.6f}"
            )
        counts = ", ".join(f"{k}: {v}" for k, v in a["status_counts"][trait].items())
        log.line(
            f"  markers: {counts}; refitted by the float64 path: {a['n_refitted_float64'][trait]}; "
            f"lambda_GC = {a['lambda_gc'][trait]:.6g} over {a['lambda_gc_n'][trait]} ok markers"
        )
    if a.get("n_blocks_resumed"):
        log.line(f"resumed: {a['n_blocks_resumed']} block(s) taken from the checkpoint")
    for w in caught:
        log.line(f"warning: {w.category.__name__}: {w.message}")
    log.line("timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    steps = res.attrs.get("timings") or {}
    if steps:  # where the scan's time went (wall seconds; the programs load while the kinship is read)
        log.line("  scan steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in steps.items()))


def _kinship_argument(args):
    """``--kinship FILE`` (repeatable: several kinships), ``--loco-kinship PATTERN`` ({chr}
    replaced per chromosome), None (a GRM from the genotypes: ``--grm [KIND]`` / ``--loco``), or
    a list of kinships (None for the GRM) when several random effects are asked for."""
    from .errors import InputError

    files = list(args.kinship or [])
    if args.loco_kinship:
        if files or args.grm:
            given = " and ".join(o for o, v in (("--kinship", files), ("--grm", args.grm)) if v)
            raise InputError(f"--loco-kinship gives every kinship: not with {given}")
        if "{chr}" not in args.loco_kinship:
            raise InputError(
                f"--loco-kinship {args.loco_kinship}: the pattern must hold {{chr}}, e.g. kin.loco.{{chr}}.rel.bin"
            )
        args.loco = True
        return "pattern"
    grm = bool(args.grm or args.loco)
    if not files and not grm:
        raise InputError("give --kinship FILE, or --grm / --loco to compute it from the genotypes")
    kinships = ([None] if grm else []) + files
    return kinships if len(kinships) > 1 else kinships[0]


def _general(args) -> bool:
    """Whether the options ask for the scan beyond one kinship (several random effects, G x E,
    sets); Kenward-Roger tests alone run in the one-kinship scan."""
    n_kin = len(args.kinship or []) + (1 if (args.grm or args.loco) and not args.loco_kinship else 0)
    return n_kin > 1 or bool(args.random) or args.gxe is not None or args.set is not None


def run_gwas(args, out=None, argv=None) -> int:
    """The ``gwas`` subcommand: check the output prefix, open ``PREFIX.log``, scan, write the
    table(s) in ``--format`` (and Parquet, plots) atomically, print a summary."""
    import warnings

    from . import gwas

    out = out or sys.stdout
    kinship = _kinship_argument(args)
    prefix, gz = _split_out(args.out)
    check_writable(prefix)
    checkpoint = f"{prefix}.checkpoint"
    log = RunLog(f"{prefix}.log")
    try:
        _log_header(log, argv if argv is not None else sys.argv[1:])
        stale = [f for f in _outputs(prefix) if os.path.exists(f)]
        for f in stale:
            os.remove(f)
        if stale:
            log.line(f"removed the previous run's output: {', '.join(stale)}")
        if not args.resume and os.path.isdir(checkpoint):
            shutil.rmtree(checkpoint)
            log.line(f"removed a previous run's checkpoint {checkpoint} (no --resume)")
        start = time.perf_counter()
        source = open_source(args, ids_file=args.pheno)
        if _general(args):
            _run_model_scan(args, source, kinship, (prefix, gz), log, out, start)
            if os.path.isdir(checkpoint):
                shutil.rmtree(checkpoint, ignore_errors=True)
            return 0
        if args.test == "kr" and args.format != "tsv":
            from .errors import InputError

            raise InputError(f"--test kr adds f_kr, ddf_kr, p_kr: write it as --format tsv (not {args.format})")
        if kinship == "pattern":
            chromosomes = source.snps["chr"].astype(str).unique()
            kinship = {c: args.loco_kinship.replace("{chr}", c) for c in chromosomes}
        client = _dask_client(args.scheduler)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                res = gwas(
                    args.pheno,
                    source,
                    **_scan_arguments(args, kinship),
                    rotation_dtype="float64" if args.float64 else "float32",
                    devices=args.devices,
                    client=client,
                    checkpoint=checkpoint if client is None else None,
                )
        finally:
            if client is not None:
                client.close()
        timings = {"scan": time.perf_counter() - start}
        t0 = time.perf_counter()
        traits = list(res.attrs["lambda_gc"])
        written = _write_tables(res, traits, prefix, gz, args.format)
        if args.parquet:
            write_atomic(f"{prefix}.parquet", lambda tmp: res.to_parquet(tmp, index=False))
            written.append(f"{prefix}.parquet")
        if not args.no_plots:
            written += _plots(res, traits, prefix, log, out)
        timings["writing"] = time.perf_counter() - t0
        _log_results(log, res, timings, caught, args)
        if args.format == "gemma":
            log.line("gemma format: logl_H1 is NA (GEMMA's ReML log-likelihood adds log|X'X|/2 per marker; see loglik "
                     "in --format tsv)")  # fmt: skip
        _print_summary(res, traits, timings["scan"], written, out, caught)
        log.line("written: " + ", ".join(written))
        log.line(f"completed: {time.strftime('%Y-%m-%d %H:%M:%S')}")
        if os.path.isdir(checkpoint):
            shutil.rmtree(checkpoint, ignore_errors=True)
        return 0
    except BaseException as err:
        log.line(f"error: {err}" if str(err) else f"stopped: {type(err).__name__}")
        log.line("NOT completed: the results above are incomplete or absent")
        raise
    finally:
        log.close()


def _scan_arguments(args, kinship) -> dict:
    """The ``gwas()`` arguments every scan of the command line shares."""
    from .gwas._design import MAX_VIF

    return dict(
        kinship=kinship,
        covariates=args.covar,
        pheno_names=args.pheno_name or None,
        covar_names=args.covar_name or None,
        loco=args.loco,
        lrt=args.lrt,
        test=args.test,
        chunk_size=args.chunk_size,
        max_vif=MAX_VIF if args.max_vif is None else args.max_vif,
        progress=not args.quiet,
        select=selection(args),
        grm_kind=args.grm or "standardised",
    )


def _run_model_scan(args, source, kinship, output, log: RunLog, out, start: float) -> None:
    """The scans beyond one kinship (several random effects, G x E, sets): scan, write the
    TSV (and Parquet, plots of marker scans) atomically, log and print a summary."""
    import warnings

    from . import gwas
    from .errors import InputError

    prefix, gz = output
    if args.format != "tsv":
        raise InputError(
            f"--format {args.format} describes one-kinship additive scans; scans with several random effects, "
            "--gxe or --set are written as --format tsv"
        )
    if args.scheduler:
        raise InputError("--scheduler is for one-kinship scans; scans beyond one kinship run on this machine")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = gwas(
            args.pheno,
            source,
            **_scan_arguments(args, kinship),
            random=args.random or (),
            gxe=args.gxe,
            sets=args.set,
            checkpoint=f"{prefix}.checkpoint",
        )
    elapsed = time.perf_counter() - start
    path = f"{prefix}.tsv" + (".gz" if gz else "")
    from .gwas._outputs import write_table

    write_atomic(path, lambda tmp: write_table(res, tmp, gz))
    written = [path]
    if args.parquet:
        write_atomic(f"{prefix}.parquet", lambda tmp: res.to_parquet(tmp, index=False))
        written.append(f"{prefix}.parquet")
    traits = list(res.attrs["lambda_gc"])
    if not args.no_plots and args.set is None:
        written += _plots(res, traits, prefix, log, out)
    a = res.attrs
    log.line(
        f"inputs: genotypes {genotype_path(args)} ({a['n_genotyped']} individuals, {a['n_markers']} markers), "
        f"phenotypes {args.pheno}, covariates {args.covar or 'none'}"
    )
    for line in selection_lines(a["selection"]):
        log.line(line)
    model = a["model"]
    log.line(
        f"model: variance components {', '.join(a['components'])} (kinships: {', '.join(a['kinships'])}); "
        + (f"G x E with {model['gxe']}; " if model["gxe"] else "")
        + (f"marker sets from {args.set}; " if model["sets"] else "")
        + f"tests: Wald{' and Kenward-Roger' if model['test'] == 'kr' else ''}{' and LRT' if args.lrt else ''}; "
        "every model at its exact ReML optimum"
    )
    for trait in traits:
        counts = ", ".join(f"{k}: {v}" for k, v in a["status_counts"][trait].items())
        line = (
            f"trait {trait}: {a['n_analysed'][trait]} individuals analysed, {a['n_dropped_missing'][trait]} dropped "
            f"(missing covariate); {a['n_tests'][trait]} tests ({counts}); lambda_GC = {a['lambda_gc'][trait]:.6g}"
        )
        log.line(line)
        print(f"mm4lmm gwas: {line}", file=out)
    for w in caught:
        log.line(f"warning: {w.category.__name__}: {w.message}")
        if not issubclass(w.category, MissingDataWarning):
            print(f"  warning: {w.message}", file=out)
    if a.get("n_blocks_resumed"):
        log.line(f"resumed: {a['n_blocks_resumed']} block(s) taken from the checkpoint")
    log.line(f"timings: scan {elapsed:.2f} s")
    log.line("written: " + ", ".join(written))
    log.line(f"completed: {time.strftime('%Y-%m-%d %H:%M:%S')}")
    print("written: " + ", ".join(written), file=out)


def _write_tables(res: pd.DataFrame, traits: list[str], prefix: str, gz: bool, fmt: str) -> list[str]:
    """The results table(s), each written atomically: ``tsv`` one table of every trait
    (``PREFIX.tsv[.gz]``); ``gwas-ssf`` one ``.tsv.gz`` per trait with its ``-meta.yaml``;
    ``gemma`` one ``.assoc.txt[.gz]`` per trait.  Several traits: ``PREFIX.<trait>.<ext>``."""
    from . import __version__
    from .gwas._outputs import gemma_table, ssf_metadata, ssf_table, write_table

    if fmt == "tsv":
        path = f"{prefix}.tsv" + (".gz" if gz else "")
        write_atomic(path, lambda tmp: write_table(res, tmp, gz))
        return [path]
    written = []
    for trait in traits:
        part = _trait_rows(res, trait)
        base = prefix if len(traits) == 1 else f"{prefix}.{trait}"
        if fmt == "gwas-ssf":
            path = f"{base}.tsv.gz"
            write_atomic(path, lambda tmp, part=part: write_table(ssf_table(part), tmp, True))
            meta = ssf_metadata(path, part, trait, res.attrs, f"mm4lmm_jax {__version__} (exact LMM, Wald test)")
            write_atomic(f"{path}-meta.yaml", lambda tmp, meta=meta: Path(tmp).write_text(meta))
            written += [path, f"{path}-meta.yaml"]
        else:
            path = f"{base}.assoc.txt" + (".gz" if gz else "")
            write_atomic(path, lambda tmp, part=part: write_table(gemma_table(part), tmp, gz))
            written.append(path)
    return written


def _trait_rows(res: pd.DataFrame, trait: str) -> pd.DataFrame:
    """The rows of one trait (all rows when the scan had one trait)."""
    return res[res["trait"] == trait] if "trait" in res else res


def _plots(res, traits, prefix, log: RunLog, out) -> list[str]:
    """Manhattan and QQ plots per trait, or a one-line note when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        note = "plots skipped: matplotlib is not installed (pip install matplotlib, or --no-plots)"
        print(note, file=out)
        log.line(note)
        return []
    from .plots import save_plots

    written = []
    for trait in traits:
        part = _trait_rows(res, trait)
        written += [_renamed(f) for f in save_plots(part, prefix + ".tmp-plot", trait if len(traits) > 1 else None)]
    return written


def _renamed(tmp_path: str) -> str:
    """A plot written under the temporary prefix, renamed to its final name (atomic)."""
    final = tmp_path.replace(".tmp-plot", "", 1)
    os.replace(tmp_path, final)
    return final


def _print_summary(res, traits, elapsed, written, out, caught) -> None:
    a = res.attrs
    print(
        f"mm4lmm gwas: {len(res) // len(traits)} markers, {len(traits)} trait(s) in {elapsed:.1f} s",
        file=out,
    )
    for trait in traits:
        counts = ", ".join(f"{k}: {v}" for k, v in a["status_counts"][trait].items())
        part = _trait_rows(res, trait)
        print(
            f"  {trait}: {a['n_analysed'][trait]} analysed ({a['n_dropped_missing'][trait]} dropped for a missing "
            f"phenotype or covariate), lambda_GC = {a['lambda_gc'][trait]:.4f} ({a['lambda_gc_n'][trait]} ok markers), "
            f"min p_wald = {part['p_wald'].min():.3g}; {counts}",
            file=out,
        )
    shown = [w for w in caught if not issubclass(w.category, MissingDataWarning)]
    for w in shown:
        print(f"  warning: {w.message}", file=out)
    print("written: " + ", ".join(written), file=out)


def _dask_client(address: str | None):
    if not address:
        return None
    from distributed import Client

    return Client(address)


def _add_gwas_parser(sub) -> None:
    p = sub.add_parser(
        "gwas",
        help="exact mixed-model GWAS scan (PLINK 1/2, BGEN, VCF, BIMBAM; kinship + error, ReML, Wald test)",
        description="For every marker (and trait), fit y = covariates + marker + u + e by ReML with "
        "u ~ N(0, s2_g K), e ~ N(0, s2_e I) (variance components re-estimated per marker, like "
        "GEMMA -lmm 1), and test the marker by Wald (F test as GEMMA; chi-square p too). Missing "
        "genotypes are mean-imputed per marker over the analysed individuals.",
    )
    add_genotype_args(p)
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
    p.add_argument(
        "--kinship",
        metavar="FILE",
        action="append",
        help="kinship: GEMMA's text (n x n, no header, rows in genotype-file order) or .npy (shape checked), or "
        "PLINK 2's .rel.bin / .rel with its .rel.id (matched by ID); `mm4lmm grm` writes each. Repeat for "
        "several kinships (one variance component each; with --grm, the GRM is one more)",
    )
    p.add_argument(
        "--grm",
        nargs="?",
        const="standardised",
        choices=["standardised", "centred"],
        help="compute the kinship from the selected markers: standardised (default; GEMMA -gk 2) or centred "
        "(GEMMA -gk 1)",
    )
    p.add_argument(
        "--loco",
        action="store_true",
        help="leave one chromosome out: test each chromosome with a GRM of the others (kind from --grm)",
    )
    p.add_argument(
        "--loco-kinship",
        metavar="PATTERN",
        help="LOCO with given kinships: a file name holding {chr}, e.g. kin.loco.{chr}.rel.bin (as `mm4lmm grm "
        "--loco` writes them)",
    )
    p.add_argument(
        "--random",
        action="append",
        metavar="COL",
        help="a covariate column whose levels are iid group effects (e.g. block, environment): one more variance "
        "component, re-estimated per marker (repeat for several)",
    )
    p.add_argument(
        "--gxe",
        metavar="COL",
        help="gene x environment: COL a covariate column (numbers: continuous; text: a factor); the model adds COL "
        "and marker x COL, tests the interaction (beta, stat, p_wald; df = levels - 1) and marker + interaction "
        "jointly (*_joint); with one kinship, GEMMA -gxe's model",
    )
    p.add_argument(
        "--set",
        metavar="FILE",
        help="marker sets: each line a set name then its marker IDs (or 'SET MARKER' pairs); one joint test per "
        "set, its markers entering together (df = markers left after the selection)",
    )
    p.add_argument(
        "--test",
        choices=["wald", "kr"],
        default="wald",
        help="kr: also Kenward-Roger F tests (f_kr, ddf_kr, p_kr) per marker or set",
    )
    p.add_argument("--lrt", action="store_true", help="also fit ML models and report the likelihood-ratio test")
    p.add_argument("--chunk-size", type=int, default=2048, metavar="N", help="markers or sets per block (default 2048)")
    p.add_argument("--float64", action="store_true", help="rotate genotypes in float64 (default float32)")
    p.add_argument("--devices", type=int, metavar="N", help="local JAX devices to use (default: all)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run blocks on a Dask cluster (scheduler address)")
    p.add_argument(
        "--max-vif",
        type=float,
        metavar="X",
        help="covariates with a variance inflation factor above X are an error (default 1e6: collinear to "
        "working precision; PLINK 2's --glm uses 50)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="go on from the blocks a killed run of the same command saved in PREFIX.checkpoint/",
    )
    add_selection_args(p)
    p.add_argument(
        "--format",
        choices=["tsv", "gwas-ssf", "gemma"],
        default="tsv",
        help="results table: tsv (all columns, default), gwas-ssf (GWAS Catalog summary statistics: PREFIX.tsv.gz "
        "+ PREFIX.tsv.gz-meta.yaml), gemma (GEMMA's .assoc.txt columns); one file per trait for the last two",
    )
    p.add_argument("--parquet", action="store_true", help="also write PREFIX.parquet")
    p.add_argument("--no-plots", action="store_true", help="do not write the Manhattan and QQ plots")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--out",
        required=True,
        metavar="PREFIX",
        help="output prefix: PREFIX.tsv, PREFIX.log, PREFIX.manhattan.png, ... (a previous run's files of the "
        "same prefix are removed at the start); ending in .tsv.gz: compressed tables",
    )


def _add_grm_parser(sub) -> None:
    p = sub.add_parser(
        "grm",
        help="kinship from genotypes (GEMMA's standardised or centred definition; LOCO per chromosome)",
        description="Compute the kinship W W'/m of the kept individuals over the selected markers: standardised "
        "(GEMMA -gk 2: each marker mean-imputed, centred, divided by its standard deviation) or centred (GEMMA -gk "
        "1). Monomorphic and all-missing markers are left out. Written as GEMMA text (PREFIX.sXX.txt / .cXX.txt), "
        ".npy, or PLINK 2's PREFIX.rel.bin + .rel.id; --loco adds PREFIX.loco.<chr>.* per chromosome.",
    )
    add_genotype_args(p)
    p.add_argument("--kind", choices=["standardised", "centred"], default="standardised", help="definition")
    p.add_argument("--gk", type=int, choices=[1, 2], help="GEMMA's name for --kind: 1 centred, 2 standardised")
    p.add_argument("--loco", action="store_true", help="also one kinship per chromosome, leaving it out")
    p.add_argument(
        "--format",
        choices=["gemma", "npy", "rel-bin"],
        default="rel-bin",
        help="rel-bin (default: PLINK 2's square float64 + .rel.id, read back by ID), gemma (text, no IDs: rows "
        "in genotype-file order of the kept individuals), npy",
    )
    p.add_argument("--ids", metavar="FILE", help="for --bimbam: the table (FID IID ...) naming its individuals")
    add_selection_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, metavar="PREFIX", help="output prefix (and PREFIX.log)")


def run_grm(args, out=None, argv=None) -> int:
    """The ``grm`` subcommand: the kinship (and LOCO ones) written in ``--format``, and a log."""
    from .gwas import kinship_matrix, write_kinship

    out = out or sys.stdout
    kind = {1: "centred", 2: "standardised"}[args.gk] if args.gk else args.kind
    check_writable(args.out)
    log = RunLog(f"{args.out}.log")
    try:
        _log_header(log, argv if argv is not None else sys.argv[1:])
        start = time.perf_counter()
        source = open_source(args, ids_file=args.ids)
        bar = None
        if not args.quiet:
            from tqdm.auto import tqdm

            bar = tqdm(total=source.m * (2 if args.loco else 1), unit="marker", desc="kinship", unit_scale=True)
        try:
            kin = kinship_matrix(
                source, kind=kind, loco=args.loco, select=selection(args), progress=bar.update if bar else None
            )
        finally:
            if bar is not None:
                bar.close()
        written = write_kinship(kin, args.out, args.format)
        log.line(f"genotypes: {genotype_path(args)} ({source.n} individuals, {source.m} markers)")
        for line in selection_lines(kin.selection.as_dict()):
            log.line(line)
        log.line(f"kinship: {kind} (GEMMA -gk {1 if kind == 'centred' else 2}) of {len(kin.iid)} individuals over "
                 f"{kin.n_markers} polymorphic markers")  # fmt: skip
        log.line("written: " + ", ".join(written))
        log.line(f"completed: {time.strftime('%Y-%m-%d %H:%M:%S')} ({time.perf_counter() - start:.2f} s)")
        print(
            f"mm4lmm grm: {kind} kinship of {len(kin.iid)} individuals over {kin.n_markers} markers; written: "
            + ", ".join(written),
            file=out,
        )
        return 0
    except BaseException as err:
        log.line(f"error: {err}" if str(err) else f"stopped: {type(err).__name__}")
        log.line("NOT completed")
        raise
    finally:
        log.close()


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
    _add_grm_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "example":
        run_example()
        return 0
    from ._cache import restore_settings
    from .errors import InputError

    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    settings = _enable_compilation_cache()
    name = f"mm4lmm {args.command}"
    try:
        return run_gwas(args, argv=argv) if args.command == "gwas" else run_grm(args, argv=argv)
    except (InputError, FileNotFoundError, ValueError) as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        print(f"{name}: error: {err.strerror or err}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        what = "terminated" if isinstance(err, Terminated) else "interrupted"
        kept = "; completed blocks are kept for --resume" if args.command == "gwas" else ""
        print(f"{name}: {what}{kept}", file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130
    finally:
        restore_settings(settings)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM received (exit status 143, as a process killed by it)."""


def _terminate(signum, frame):
    """SIGTERM (sent by ``timeout``, SLURM, ``kill``) ends the run as Ctrl-C does: temporary
    files and worker processes are cleaned up on the way out."""
    raise Terminated


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


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


__all__ = [
    "RunLog",
    "Terminated",
    "check_writable",
    "entry",
    "main",
    "run_example",
    "run_grm",
    "run_gwas",
    "run_gwas_example",
    "write_atomic",
]
