"""GWAS scans: the profiled core against exact fits and mmest, gwas() inputs and outputs,
agreement with GEMMA, LOCO, several traits, LRT, devices, Dask, CLI and plots."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import mm4lmm_jax as mj
from mm4lmm_jax.core import _profile_scan as ps
from mm4lmm_jax.datasets._simulate import simulate_plink
from mm4lmm_jax.gwas import _scan as scan_module
from mm4lmm_jax.gwas._io import InputError, open_plink
from mm4lmm_jax.gwas._kinship import standardised_block

FIXTURE = Path(__file__).parent / "fixtures" / "gwas_gemma"


def _related(n, m, seed=0):
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.05, 0.5, size=m + 300)
    geno = rng.binomial(2, freq, size=(n, m + 300)).astype(float)
    w = (geno[:, :300] - 2 * freq[:300]) / np.sqrt(2 * freq[:300] * (1 - freq[:300]))
    kin = w @ w.T / 300
    y = 0.4 * geno[:, 300] + rng.multivariate_normal(np.zeros(n), 0.6 * kin + 0.4 * np.eye(n), method="cholesky")
    cov = rng.normal(size=n)
    return y + 0.5 * cov, geno[:, 300:], kin, cov


@pytest.fixture(scope="module")
def small():
    return _related(240, 48)


@pytest.fixture(scope="module")
def plink(tmp_path_factory):
    return simulate_plink(tmp_path_factory.mktemp("plink"), n=200, m=300, n_chrom=3, seed=5)


# ---------------------------------------------------------------- core -----------------


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_profiled_scan_is_the_exact_optimum(small, method):
    """Grid + interpolation + one step == damped Newton run to 1e-11 (tolerances: log delta
    1e-6, beta 1e-7 SE, SE 1e-8 relative, log-likelihood 1e-8)."""
    y, g, kin, cov = small
    d, u = np.linalg.eigh(kin)
    data = ps.ScanData(jnp.asarray(np.clip(d, 0, None)), jnp.asarray(u.T @ np.column_stack([np.ones_like(y), cov])).T,
                       jnp.asarray(u.T @ y))  # fmt: skip
    g_rot = jnp.asarray(g.T @ u)
    out = ps.scan_markers(g_rot, data, method=method)
    m = g.shape[1]
    t, _, done, (ll, beta, se, _) = ps.newton(
        out.log_delta, jnp.zeros(m, bool), tuple(jnp.zeros(m) for _ in range(4)), g_rot, data, method,
        (math.log(1e-5), math.log(1e5)), 1.0, 1e-11, 60,
    )  # fmt: skip
    assert bool(np.all(done)) and bool(np.all(out.converged))
    interior = np.asarray(t) > math.log(1e-5) + 1e-9
    np.testing.assert_allclose(out.log_delta[interior], t[interior], atol=1e-6)
    np.testing.assert_allclose(out.beta, beta, atol=1e-7 * float(np.max(se)))
    np.testing.assert_allclose(out.se, se, rtol=1e-8)
    np.testing.assert_allclose(out.loglik, ll, atol=1e-8)


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_gwas_matches_mmest_marker_fits(small, method):
    """gwas() on arrays == mmest(X=markers) at tight stopping (beta/SE/log-likelihood), with
    a covariate; ReML through p_wald, ML through the log-likelihood of the LRT."""
    y, g, kin, cov = small
    res = mj.gwas(y, g, kinship=kin, covariates=cov, progress=False, rotation_dtype="float64", lrt=True)
    ref = mj.mmest(y, cofactor=cov[:, None], x=g, var_list={"K": kin, "E": np.eye(y.size)}, method=method,
                   crit_var=1e-10, crit_loglik=1e-10, max_iter=2000, verbose=False)  # fmt: skip
    beta, se = ref.beta_array[:, -1], np.sqrt(ref.var_beta_array[:, -1, -1])
    if method == "reml":
        np.testing.assert_allclose(res.beta, beta, atol=2e-6 * se.max())
        np.testing.assert_allclose(res.se, se, rtol=2e-6)
        np.testing.assert_allclose(res.loglik, ref.loglik_array, atol=1e-7)
        np.testing.assert_allclose(res.sigma2_g, ref.sigma2_array[:, 0], rtol=1e-4)
    else:
        null = mj.mmest(y, cofactor=cov[:, None], var_list={"K": kin, "E": np.eye(y.size)}, method="ml",
                        crit_var=1e-10, crit_loglik=1e-10, max_iter=2000, verbose=False)  # fmt: skip
        lrt = 2 * (ref.loglik_array - null.loglik_array[0])
        np.testing.assert_allclose(res.lrt, np.maximum(lrt, 0), atol=1e-6)
        np.testing.assert_allclose(res.p_lrt, stats.chi2.sf(res.lrt, 1), rtol=1e-8)


def test_null_fit_matches_mmest(small):
    y, _, kin, cov = small
    d, u = np.linalg.eigh(kin)
    x = np.column_stack([np.ones_like(y), cov])
    data = ps.ScanData(jnp.asarray(np.clip(d, 0, None)), jnp.asarray((u.T @ x).T), jnp.asarray(u.T @ y))
    out = ps.null_fit(data)
    ref = mj.mmest(y, cofactor=cov[:, None], var_list={"K": kin, "E": np.eye(y.size)}, crit_var=1e-11,
                   crit_loglik=1e-11, max_iter=5000, verbose=False)  # fmt: skip
    s2e = float(out.sigma2_e[0])
    np.testing.assert_allclose([math.exp(float(out.log_delta[0])) * s2e, s2e], ref.sigma2_array[0], rtol=1e-5)
    assert float(out.loglik[0]) >= ref.loglik_array[0] - 1e-9


def test_p_values_match_scipy_in_the_tails(small):
    y, g, kin, _ = small
    res = mj.gwas(y + 3.0 * g[:, 0], g, kinship=kin, progress=False)
    df = res.n[0] - 2
    np.testing.assert_allclose(res.p_wald, stats.f.sf(res.stat, 1, df), rtol=1e-9)
    np.testing.assert_allclose(res.p_chi2, stats.chi2.sf(res.stat, 1), rtol=1e-9)
    assert res.p_wald.min() < 1e-30


def test_float32_rotation_keeps_p_values(small):
    """The default float32 rotation moves -log10 p by less than 1e-4 (vs float64)."""
    y, g, kin, cov = small
    f32 = mj.gwas(y, g, kinship=kin, covariates=cov, progress=False)
    f64 = mj.gwas(y, g, kinship=kin, covariates=cov, progress=False, rotation_dtype="float64")
    assert np.max(np.abs(np.log10(f32.p_wald) - np.log10(f64.p_wald))) < 1e-4
    assert f32.attrs["rotation_dtype"] == "float32"


# ---------------------------------------------------------------- inputs ---------------


def test_missing_monomorphic_and_imputation(small):
    y, g, kin, _ = small
    g = g.copy()
    g[:5, 0] = np.nan
    g[:, 1] = 2.0
    g[:, 2] = np.nan
    res = mj.gwas(y, g, kinship=kin, progress=False)
    assert list(res.status[:3]) == ["ok", "monomorphic", "all missing"]
    assert res.loc[1:2, ["beta", "se", "p_wald"]].isna().all().all()
    assert not res.converged[1] and res.status[3:].eq("ok").all()
    assert res.n_miss[0] == 5 and res.af[0] == pytest.approx(np.nanmean(g[:, 0]) / 2)
    filled = g[:, :1].copy()
    filled[:5, 0] = np.nanmean(g[:, 0])
    one = mj.gwas(y, filled, kinship=kin, progress=False)
    assert one.beta[0] == pytest.approx(res.beta[0], rel=1e-9)
    assert "mean-imputed" in res.attrs["imputation"]


def test_int8_counts_impute_like_floats():
    """impute_block on int8 counts (-127 missing, as read from a .bed) == on floats with NaN:
    same imputed matrix, observed counts, frequencies and status (monomorphic with missing
    values, all missing, polymorphic)."""
    from mm4lmm_jax.gwas._block import impute_block
    from mm4lmm_jax.gwas._io import MISSING_COUNT

    rng = np.random.default_rng(4)
    counts = rng.integers(0, 3, size=(50, 40)).astype(np.int8)
    counts[rng.random(counts.shape) < 0.1] = MISSING_COUNT
    counts[:, 0] = 2
    counts[::3, 0] = MISSING_COUNT
    counts[:, 1] = MISSING_COUNT
    floats = np.where(counts == MISSING_COUNT, np.nan, counts)
    for dtype in ("float32", "float64"):
        a, qa = impute_block(np.asfortranarray(counts), dtype)
        b, qb = impute_block(floats.astype(dtype))
        assert a.dtype == np.dtype(dtype) and a.flags.c_contiguous
        np.testing.assert_array_equal(a, b)
        for x, y in zip(qa, qb):
            np.testing.assert_array_equal(x, y)
    assert list(qa.status[:3]) == [2, 1, 0]


def test_blocks_bound_memory_and_reuse_one_program(small, monkeypatch):
    """Markers are read in blocks of at most chunk_size (rounded up to 64), and every block
    (the last one padded) runs the one program compiled for the scan."""
    from mm4lmm_jax.gwas import _io as io
    from mm4lmm_jax.gwas import _scan as scan

    y, g, kin, _ = small
    sizes, compiled = [], []
    original_read = io.GenotypeSource.read_counts
    original_compile = scan._Programs._compile

    def spy_read(self, rows, start, stop, dtype="float64"):
        sizes.append(stop - start)
        return original_read(self, rows, start, stop, dtype)

    def spy_compile(*args):
        out = original_compile(*args)
        compiled.append(out[0])
        return out

    monkeypatch.setattr(io.GenotypeSource, "read_counts", spy_read)
    monkeypatch.setattr(scan._Programs, "_compile", staticmethod(spy_compile))
    res = mj.gwas(y, g, kinship=kin, progress=False, chunk_size=20)
    assert max(sizes) <= 64 and sum(sizes) == g.shape[1] and len(compiled) == 1
    whole = mj.gwas(y, g, kinship=kin, progress=False, chunk_size=4096)
    np.testing.assert_allclose(res.p_wald, whole.p_wald, rtol=1e-12)


def test_exported_programs_are_stored_and_reused(small, tmp_path):
    """With a cache directory the block, null and float64-refit programs are exported once,
    loaded from disk by a later run (no tracing), and give the same numbers as the traced
    programs (a strong marker makes the scan use the refit program)."""
    import jax

    from mm4lmm_jax.gwas import _scan as scan

    y, g, kin, _ = small
    y = y + 3.0 * g[:, 0]

    def clear():
        scan._Programs._compile.cache_clear()
        scan._Programs._compile_refit.cache_clear()

    traced = mj.gwas(y, g, kinship=kin, progress=False)
    assert traced.attrs["n_refitted_float64"]["phenotype"] > 0
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(tmp_path))
    try:
        clear()
        first = mj.gwas(y, g, kinship=kin, progress=False)
        stored = sorted(p.name.split("-")[0] for p in (tmp_path / "exported").iterdir())
        assert stored == ["block", "null_reml", "refit"]
        clear()
        again = mj.gwas(y, g, kinship=kin, progress=False)
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
        clear()
    for res in (first, again):
        np.testing.assert_allclose(res.p_wald, traced.p_wald, rtol=1e-12)
        np.testing.assert_allclose(res.sigma2_g, traced.sigma2_g, rtol=1e-12)


def test_several_traits_equal_single_runs(plink):
    """Each trait is analysed on its own individuals: its results in a run with other traits
    (another missingness pattern) equal a run of that trait alone, and n is per trait."""
    both = mj.gwas(plink.pheno, plink.prefix, kinship=plink.kinship, progress=False)
    assert set(both.trait) == {"trait1", "trait2"}
    for trait in ("trait1", "trait2"):
        one = mj.gwas(plink.pheno, plink.prefix, kinship=plink.kinship, pheno_names=[trait], progress=False)
        part = both[both.trait == trait].reset_index(drop=True)
        for col in ("beta", "se", "p_wald", "sigma2_g", "loglik"):
            np.testing.assert_allclose(part[col], one[col], rtol=1e-12)
        assert (part.n == one.attrs["n_analysed"][trait]).all()
        assert both.attrs["n_analysed"][trait] == one.attrs["n_analysed"][trait]
    pheno = pd.read_csv(plink.pheno, sep="\t")
    assert both.attrs["n_analysed"] == {t: int(pheno[t].notna().sum()) for t in ("trait1", "trait2")}
    assert set(both.attrs["lambda_gc"]) == {"trait1", "trait2"}


def test_ids_are_matched_and_drops_reported(plink, tmp_path):
    pheno = pd.read_csv(plink.pheno, sep="\t")
    shuffled = pheno.sample(frac=1.0, random_state=1)
    extra = pd.DataFrame({"FID": ["X"], "IID": ["nobody"], "trait1": [1.0], "trait2": [2.0]})
    path = tmp_path / "p.tsv"
    pd.concat([shuffled, extra]).to_csv(path, sep=" ", index=False, na_rep="NA")
    a = mj.gwas(str(path), plink.prefix, kinship=plink.kinship, pheno_names=["trait1"], progress=False)
    b = mj.gwas(plink.pheno, plink.prefix, kinship=plink.kinship, pheno_names=["trait1"], progress=False)
    np.testing.assert_allclose(a.p_wald, b.p_wald, rtol=1e-12)
    assert a.attrs["n_phenotyped_not_genotyped"] == 1
    assert a.attrs["n_dropped_missing"] == {"trait1": int(pheno.trait1.isna().sum())}
    by_iid = pheno.set_index("IID")[["trait1"]]
    c = mj.gwas(by_iid, plink.prefix, kinship=plink.kinship, progress=False)
    np.testing.assert_allclose(c.p_wald, b.p_wald, rtol=1e-12)


def test_kinship_file_parsed_by_workers_gives_the_same_scan(plink, monkeypatch):
    """A kinship file parsed by worker processes gives the scan of the same matrix given in
    memory, bit for bit; a scan that fails before it waits for the parse stops the workers
    and removes their files."""
    from mm4lmm_jax.gwas import _text_matrix as text_matrix

    folders = []

    def scratch(needed):
        folders.append(original(needed))
        return folders[-1]

    original = text_matrix._scratch_dir
    monkeypatch.setattr(text_matrix, "IN_PROCESS_BYTES", 0)
    monkeypatch.setattr(text_matrix, "MIN_PART_BYTES", 1)
    monkeypatch.setattr(text_matrix, "_scratch_dir", scratch)
    kw = dict(pheno_names=["trait1"], progress=False)
    from_file = mj.gwas(plink.pheno, plink.prefix, kinship=plink.kinship, **kw)
    assert len(folders) == 1 and not Path(folders[0]).exists()
    in_memory = mj.gwas(plink.pheno, plink.prefix, kinship=np.loadtxt(plink.kinship), **kw)
    pd.testing.assert_frame_equal(from_file, in_memory)

    def fail(source):
        raise InputError("stop here")

    monkeypatch.setattr(scan_module, "_import_host_libraries", fail)
    with pytest.raises(InputError, match="stop here"):
        mj.gwas(plink.pheno, plink.prefix, kinship=plink.kinship, **kw)
    assert len(folders) == 2 and not Path(folders[1]).exists()


def test_bad_inputs_say_what_is_wrong(plink, tmp_path, small):
    with pytest.raises(InputError, match="not found"):
        mj.gwas(plink.pheno, str(tmp_path / "none"), kinship=plink.kinship)
    bad_k = tmp_path / "k.txt"
    np.savetxt(bad_k, np.eye(3))
    with pytest.raises(InputError, match=r"shape \(3, 3\)"):
        mj.gwas(plink.pheno, plink.prefix, kinship=str(bad_k))
    other = tmp_path / "other.tsv"
    pd.DataFrame({"FID": ["a"], "IID": ["b"], "t": [1.0]}).to_csv(other, sep="\t", index=False)
    with pytest.raises(InputError, match="no individual matches"):
        mj.gwas(str(other), plink.prefix, kinship=plink.kinship)
    with pytest.raises(InputError, match="no column"):
        mj.gwas(plink.pheno, plink.prefix, kinship=plink.kinship, pheno_names=["height"])
    pheno = pd.read_csv(plink.pheno, sep="\t").assign(group="a")
    with pytest.raises(InputError, match=r"\['group'\] hold non-numeric"):
        mj.gwas(pheno, plink.prefix, kinship=plink.kinship)
    y, g, kin, _ = small
    with pytest.raises(InputError, match="collinear"):
        mj.gwas(y, g, kinship=kin, covariates=np.ones(y.size))
    with pytest.raises(InputError, match="rows"):
        mj.gwas(y[:-1], g, kinship=kin)
    with pytest.raises(InputError, match="loco"):
        mj.gwas(y, g, kinship=kin, loco=True)
    skew = kin.copy()
    skew[0, 1] += 0.1
    with pytest.raises(InputError, match="not symmetric"):
        mj.gwas(y, g, kinship=skew)
    skew[0, 1] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        mj.gwas(y, g, kinship=skew)
    truncated = tmp_path / "cut"
    for ext in (".bim", ".fam"):
        shutil.copy(plink.prefix + ext, str(truncated) + ext)
    Path(str(truncated) + ".bed").write_bytes(Path(plink.prefix + ".bed").read_bytes()[:100])
    with pytest.raises(InputError, match="bytes, expected"):
        mj.gwas(plink.pheno, str(truncated), kinship=plink.kinship)


# ---------------------------------------------------------------- GEMMA ----------------


def _compare_with_gemma(ours: pd.DataFrame, gemma: pd.DataFrame) -> dict:
    assert list(ours.snp) == list(gemma.rs)
    return {
        "dlog10p": float(np.max(np.abs(np.log10(ours.p_wald) - np.log10(gemma.p_wald)))),
        "beta_in_se": float(np.max(np.abs(ours.beta - gemma.beta) / gemma.se)),
        "se_rel": float(np.max(np.abs(ours.se / gemma.se - 1))),
        "af": float(np.max(np.abs(ours.af - gemma.af))),
    }


def _ours_on_fixture(directory: Path) -> pd.DataFrame:
    return mj.gwas(directory / "small.pheno.tsv", directory / "small", kinship=directory / "small.cXX.txt",
                   covariates=directory / "small.covar.tsv", pheno_names=["trait1"], progress=False,
                   rotation_dtype="float64")  # fmt: skip


def test_agrees_with_frozen_gemma_output():
    """GEMMA 0.98.5 ``-lmm 1`` (tools/make_gemma_fixture.py) prints 7 significant digits:
    |delta log10 p| < 2e-5, |delta beta| < 2e-5 SE, SE within 2e-6, af to GEMMA's 3 decimals."""
    gemma = pd.read_csv(FIXTURE / "small.gemma.assoc.txt", sep="\t")
    ours = _ours_on_fixture(FIXTURE)
    diff = _compare_with_gemma(ours, gemma)
    assert diff["dlog10p"] < 2e-5 and diff["beta_in_se"] < 2e-5 and diff["se_rel"] < 2e-6 and diff["af"] <= 5e-4 + 1e-12
    # GEMMA's log of the same run (6 digits): the null model's pve (kinship centred over the
    # analysed individuals) and its SE (observed curvature in lambda), vg, ve
    null = ours.attrs["null_models"]["trait1"]["all"]
    assert null["pve_gemma"] == pytest.approx(0.404293, abs=5e-6)
    assert null["pve_gemma_se"] == pytest.approx(0.0900937, abs=5e-7)
    assert null["sigma2_g"] == pytest.approx(1.3179, abs=5e-5) and null["sigma2_e"] == pytest.approx(0.677106, abs=5e-6)
    assert abs(null["h2"] - null["pve_gemma"]) > 1e-5  # h2 uses the kinship's trace as given


@pytest.mark.skipif(shutil.which("gemma") is None, reason="gemma not installed (.ci/run installs it)")
def test_agrees_with_gemma_run_now(tmp_path):
    """The same comparison with GEMMA run in this test (the installed version)."""
    for name in ("small.bed", "small.bim", "small.fam", "small.cXX.txt", "small.gemma_covar.txt"):
        shutil.copy(FIXTURE / name, tmp_path / name)
    subprocess.run(
        ["gemma", "-bfile", "small", "-k", "small.cXX.txt", "-c", "small.gemma_covar.txt", "-lmm", "1", "-maf", "0",
         "-miss", "1", "-r2", "1", "-o", "now", "-outdir", "out"],
        cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    gemma = pd.read_csv(tmp_path / "out" / "now.assoc.txt", sep="\t")
    diff = _compare_with_gemma(_ours_on_fixture(FIXTURE), gemma)
    assert diff["dlog10p"] < 2e-5 and diff["beta_in_se"] < 2e-5 and diff["se_rel"] < 2e-6


def test_real_data_bxd_agrees_with_gemma():
    """BXD mice (real genotypes, 67 of 198 phenotyped, missing genotypes, sex covariate; 28% of
    the markers at the boundary s2_g = 0, where GEMMA reports its bound 1e-5): measured
    |delta log10 p| 2.2e-7, |delta beta| 4.9e-7 SE, SE 4.9e-7 relative."""
    root = FIXTURE.parent / "bxd"
    ours = mj.gwas(root / "pheno.tsv", root / "bxd", kinship=root / "bxd.cXX.txt.gz", covariates=root / "covar.tsv",
                   progress=False, rotation_dtype="float64")  # fmt: skip
    gemma = pd.read_csv(root / "gemma.assoc.txt.gz", sep="\t")
    assert ours.attrs["n_analysed"] == {"trait": 67} and (ours.status == "ok").all()
    diff = _compare_with_gemma(ours, gemma)
    assert diff["dlog10p"] < 2e-6 and diff["beta_in_se"] < 2e-6 and diff["se_rel"] < 2e-6
    at_bound = (ours.sigma2_g / ours.sigma2_e < 1.0001e-5).to_numpy()
    np.testing.assert_array_equal(at_bound, (gemma.l_remle <= 1.0001e-5).to_numpy())
    assert 0.2 < at_bound.mean() < 0.4


# ---------------------------------------------------------------- LOCO, scale ----------


def test_loco_uses_the_other_chromosomes(plink):
    res = mj.gwas(plink.pheno, plink.prefix, loco=True, pheno_names=["trait1"], progress=False)
    src = open_plink(plink.prefix)
    pheno = pd.read_csv(plink.pheno, sep="\t")
    rows = np.flatnonzero(pheno.trait1.notna().to_numpy())
    raw = src.read(rows, 0, src.m)
    chrom = src.snps.chr.to_numpy()
    for c in ("1", "3"):
        w = standardised_block(raw[:, chrom != c])
        kin = np.zeros((src.n, src.n))
        kin[np.ix_(rows, rows)] = w @ w.T / w.shape[1]
        one = mj.gwas(plink.pheno, plink.prefix, kinship=kin, pheno_names=["trait1"], progress=False)
        on_c = (res.chr == c).to_numpy()
        # float32 eigendecompositions of two roundings of one matrix (sum minus part, and direct)
        np.testing.assert_allclose(res.p_wald[on_c], one.p_wald[on_c], rtol=1e-5)
    assert res.attrs["loco"] and len(res.attrs["null_models"]["trait1"]) == 3


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-9), ("float32", 1e-4)])
def test_rotation_in_the_program_equals_rotation_on_the_host(small, monkeypatch, dtype, rtol):
    """The accelerator path (jnp eigh, the rotation inside the compiled block program) gives
    the CPU path's results (numpy BLAS rotation): to rounding in float64, to the float32
    class in float32 (XLA's and OpenBLAS's dot round differently)."""
    from mm4lmm_jax.gwas import _scan as scan

    y, g, kin, cov = small
    kw = dict(kinship=kin, covariates=cov, progress=False, rotation_dtype=dtype, chunk_size=20)
    host = mj.gwas(y, g, **kw)
    monkeypatch.setattr(scan, "rotate_on_host", lambda: False)
    device = mj.gwas(y, g, **kw)
    np.testing.assert_allclose(device.p_wald, host.p_wald, rtol=rtol)
    np.testing.assert_allclose(device.beta, host.beta, rtol=rtol, atol=rtol * float(host.se.max()))
    np.testing.assert_allclose(device.sigma2_g, host.sigma2_g, rtol=100 * rtol)


def test_two_devices_give_the_same_results(plink):
    """Blocks sharded over two (forced) host devices equal the one-device scan."""
    code = textwrap.dedent(
        f"""
        import numpy as np, mm4lmm_jax as mj, jax
        assert jax.local_device_count() == 2
        kw = dict(kinship={plink.kinship!r}, pheno_names=["trait1"], progress=False, chunk_size=128)
        two = mj.gwas({plink.pheno!r}, {plink.prefix!r}, devices=2, **kw)
        one = mj.gwas({plink.pheno!r}, {plink.prefix!r}, devices=1, **kw)
        np.testing.assert_allclose(two.p_wald, one.p_wald, rtol=1e-9)
        np.testing.assert_allclose(two.beta, one.beta, rtol=1e-9)
        print("ok", len(two))
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ok 300" in out.stdout


def test_dask_cluster_gives_the_same_results(plink, tmp_path):
    """Two-worker LocalCluster: gwas(client=...) on PLINK files (workers read their blocks) and
    on arrays (blocks sent), and ``mm4lmm gwas --scheduler ADDRESS``, equal the local scan."""
    from mm4lmm_jax.cli import main

    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
        with distributed.Client(cl) as client:
            kw = dict(kinship=plink.kinship, pheno_names=["trait1"], progress=False, chunk_size=128)
            remote = mj.gwas(plink.pheno, plink.prefix, client=client, **kw)
            y, g, kin, _ = _related(120, 150, seed=3)
            remote_arr = mj.gwas(y, g, kinship=kin, client=client, progress=False, chunk_size=64)
            rc = main(["gwas", "--bfile", plink.prefix, "--pheno", plink.pheno, "--pheno-name", "trait1",
                       "--kinship", plink.kinship, "--scheduler", cl.scheduler_address, "--chunk-size", "128",
                       "--out", str(tmp_path / "dask"), "--quiet", "--no-plots"])  # fmt: skip
    local = mj.gwas(plink.pheno, plink.prefix, **kw)
    # Dask's nanny starts workers with one BLAS thread (OMP_NUM_THREADS=1): OpenBLAS then rounds
    # the float32 rotation differently, so the float32 path agrees to its accuracy class
    pd.testing.assert_frame_equal(remote, local, check_exact=False, rtol=1e-5, atol=1e-6)
    assert rc == 0
    from_cli = pd.read_csv(tmp_path / "dask.tsv", sep="\t")
    np.testing.assert_allclose(from_cli.p_wald, local.p_wald, rtol=1e-5)
    local_arr = mj.gwas(y, g, kinship=kin, progress=False, chunk_size=64)
    np.testing.assert_allclose(remote_arr.p_wald, local_arr.p_wald, rtol=1e-5)


# ---------------------------------------------------------------- CLI, plots -----------


def test_cli_writes_results_and_plots(plink, tmp_path, capsys):
    from mm4lmm_jax.cli import main

    out = tmp_path / "scan"
    rc = main(["gwas", "--bfile", plink.prefix, "--pheno", plink.pheno, "--covar", plink.covar, "--kinship",
               plink.kinship, "--out", str(out), "--quiet", "--parquet"])  # fmt: skip
    assert rc == 0
    res = pd.read_csv(f"{out}.tsv", sep="\t")
    for col in ["chr", "snp", "pos", "a1", "a2", "af", "n", "beta", "se", "stat", "p_wald", "sigma2_g", "sigma2_e",
                "h2", "loglik", "n_iter", "converged", "trait"]:  # fmt: skip
        assert col in res.columns
    assert len(res) == 600 and pd.read_parquet(f"{out}.parquet").shape == res.shape
    for trait in ("trait1", "trait2"):
        for kind in ("manhattan", "qq"):
            png = Path(f"{out}.{trait}.{kind}.png")
            assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"
    text = capsys.readouterr().out
    assert "lambda_GC" in text and "195 analysed" in text
    log = Path(f"{out}.log").read_text()
    assert "null model" in log and "pve = " in log and "lambda_GC" in log and "\ncompleted: " in log
    assert "(200 individuals, 300 markers)" in log and "command: mm4lmm gwas --bfile" in log
    steps = log.split("scan steps: ")[1].splitlines()[0]  # where the time went, per step
    for step in ("kinship", "eigendecomposition", "programs (compile or load)", "null models", "marker blocks"):
        assert step in steps
    assert not Path(f"{out}.checkpoint").exists() and not list(tmp_path.glob("*.tmp*"))


def test_tsv_output_reads_back_exactly(tmp_path):
    """write_tsv: floats read back bit for bit, NA for missing values (float, Int64, string),
    booleans as True/False, categories as their labels; a value with a tab is quoted."""
    from mm4lmm_jax.gwas._io import write_tsv

    rng = np.random.default_rng(3)
    x = rng.standard_normal(500) * 10.0 ** rng.integers(-300, 300, 500)
    x[[3, 7]] = np.nan
    frame = pd.DataFrame({
        "snp": [f"rs{i}" for i in range(500)], "pos": pd.array(np.arange(500), dtype="Int64"), "x": x,
        "ok": rng.random(500) < 0.5, "status": pd.Categorical(["ok", "all missing"] * 250),
    })  # fmt: skip
    frame.loc[5, "pos"] = pd.NA
    write_tsv(frame, tmp_path / "a.tsv")
    back = pd.read_csv(tmp_path / "a.tsv", sep="\t")
    assert list(back.columns) == list(frame.columns)
    np.testing.assert_array_equal(back["x"].to_numpy(), x)  # NaN == NaN here; every other value exact
    assert back["pos"].isna().tolist() == frame["pos"].isna().tolist() and back["ok"].tolist() == frame["ok"].tolist()
    assert back["status"].tolist() == frame["status"].astype(str).tolist()
    assert (tmp_path / "a.tsv").read_text().splitlines()[4].split("\t")[2] == "NA"
    write_tsv(pd.DataFrame({"a": ["x\ty", "z"], "b": [1.5, None]}), tmp_path / "b.tsv")
    back = pd.read_csv(tmp_path / "b.tsv", sep="\t")
    assert back["a"].tolist() == ["x\ty", "z"] and back["b"].isna().tolist() == [False, True]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bfile", "missing_prefix"], "PLINK .bed file not found"),
        (["--kinship", "missing.txt"], "kinship file not found"),
        (["--pheno", "missing.tsv"], "phenotype file not found"),
    ],
)
def test_cli_bad_files_end_with_one_line_error(plink, tmp_path, capsys, args, message):
    from mm4lmm_jax.cli import main

    base = {"--bfile": plink.prefix, "--pheno": plink.pheno, "--kinship": plink.kinship}
    base.update(dict(zip(args[::2], args[1::2])))
    argv = ["gwas", *sum(([k, v] for k, v in base.items()), []), "--out", str(tmp_path / "x"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_cli_bad_kinship_content_ends_with_one_line_error_and_no_progress_bar(plink, tmp_path, capsys):
    from mm4lmm_jax.cli import main

    bad = tmp_path / "bad.cXX.txt"
    bad.write_text("0.5 x\n")
    argv = ["gwas", "--bfile", plink.prefix, "--pheno", plink.pheno, "--kinship", str(bad), "--out",
            str(tmp_path / "x"), "--no-plots"]  # fmt: skip
    assert main(argv) == 2  # progress bars on: none has started when the kinship fails
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read kinship file" in err[0] and "could not convert string 'x'" in err[0]


def test_cli_help_explains_every_option():
    out = subprocess.run([sys.executable, "-m", "mm4lmm_jax.cli", "gwas", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for opt in ["--bfile", "--pheno", "--pheno-name", "--covar", "--kinship", "--grm", "--loco", "--chunk-size",
                "--out", "--scheduler", "--lrt", "--parquet", "intercept"]:  # fmt: skip
        assert opt in out.stdout


def test_step_by_step_scan_equals_gwas(small):
    """``prepare_scan`` -> ``run_scan(plan, LocalExecutor)`` -> ``ScanResult`` is what ``gwas()`` does."""
    from mm4lmm_jax.gwas import LocalExecutor, ScanResult, prepare_scan, run_scan

    y, g, kin, cov = small
    whole = mj.gwas(y, g, kinship=kin, covariates=cov, progress=False)
    plan = prepare_scan(y, g, kin, cov)
    result = run_scan(plan, LocalExecutor(plan.n_devices), progress=False)
    assert isinstance(result, ScanResult) and result.traits == list(whole.attrs["n_analysed"])
    pd.testing.assert_frame_equal(result.table, whole)
    assert result.meta["lambda_gc"] == whole.attrs["lambda_gc"]
