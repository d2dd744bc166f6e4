"""Scans beyond one kinship (gwas/_models.py): several kinships and iid group effects, G x E,
marker sets and Kenward-Roger, from PLINK files, against ``mmest`` on the same models and
against GEMMA ``-gxe``; their CLI."""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mm4lmm_jax as mj
from mm4lmm_jax.cli import main
from mm4lmm_jax.datasets._simulate import simulate_plink
from mm4lmm_jax.gwas import Selection, gwas, kinship_matrix, open_plink
from mm4lmm_jax.gwas._io import InputError
from mm4lmm_jax.gwas._models import read_sets

GEMMA = Path(__file__).parent / "fixtures" / "gwas_gemma"
TIGHT = dict(crit_var=1e-10, crit_loglik=1e-10, max_iter=10000, verbose=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """120 related individuals, 40 markers on 2 chromosomes, trait1 with a few missing values;
    covariates: c (numeric), block (4 text levels), env (numeric), site (3 text levels); a
    second kinship ``kb.npy`` (genotype order)."""
    root = tmp_path_factory.mktemp("models")
    sim = simulate_plink(root, n=120, m=40, n_chrom=2, seed=3)
    rng = np.random.default_rng(7)
    fam = pd.read_csv(sim.prefix + ".fam", sep=r"\s+", header=None)
    n = len(fam)
    cov = pd.DataFrame({"FID": fam[0], "IID": fam[1], "c": rng.normal(size=n),
                        "block": rng.choice(["b1", "b2", "b3", "b4"], n), "env": rng.normal(10, 3, n),
                        "site": rng.choice(["north", "south", "west"], n)})  # fmt: skip
    cov.to_csv(root / "cov.tsv", sep="\t", index=False)
    w = rng.normal(size=(n, 150))
    np.save(root / "kb.npy", w @ w.T / 150)
    src = open_plink(sim.prefix)
    ka = kinship_matrix(src).matrix
    np.save(root / "ka.npy", ka)
    return dict(root=root, sim=sim, cov=cov, ka=ka, kb=w @ w.T / 150)


def _reference(data, *, names=("ka", "kb"), random=("block",), cols=None):
    """The inputs of ``mmest`` for trait1: its rows, y, cofactor frame, imputed genotypes
    (n, m), the components."""
    pheno = pd.read_csv(data["sim"].pheno, sep="\t")
    rows = np.flatnonzero(pheno["trait1"].notna().to_numpy())
    y = pheno["trait1"].to_numpy()[rows]
    g = open_plink(data["sim"].prefix).read(rows, 0, 40)
    g = np.where(np.isnan(g), np.nanmean(g, axis=0), g)
    cov = data["cov"].iloc[rows].reset_index(drop=True)
    var_list, z_list = {}, {}
    for nm in names:
        var_list[nm], z_list[nm] = data[nm][np.ix_(rows, rows)], None
    for col in random:
        levels = sorted(cov[col].unique())
        z_list[col] = np.eye(len(levels))[np.searchsorted(levels, cov[col])]
        var_list[col] = np.eye(len(levels))
    var_list["error"], z_list["error"] = np.eye(rows.size), None
    return rows, y, cov, g, var_list, z_list


def _scan(data, **kw):
    root = data["root"]
    kw.setdefault("kinship", [root / "ka.npy", root / "kb.npy"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gwas(data["sim"].pheno, data["sim"].prefix, covariates=root / "cov.tsv", pheno_names=["trait1"],
                    progress=False, **kw)  # fmt: skip


def _p_term(fit, term: str, kind: str = "TypeIII") -> np.ndarray:
    table = mj.anova_test(fit, type=kind)
    column = "pval"
    return np.array([table[nm].loc[term, column] for nm in fit.names])


def test_two_kinships_and_a_group_effect_equal_mmest(data):
    """Kinships A and B, iid block effects and the error: sigma2 (relative 1e-6), beta, SE and
    the Wald p-value (1e-6 in log10) of every marker as ``mmest`` (Newton, exact optimum) on
    the same model; Kenward-Roger as ``anova_test(type="KR")``; one sigma2 column per component."""
    res = _scan(data, covar_names=["c", "block"], random=["block"], test="kr")
    rows, y, cov, g, var_list, z_list = _reference(data)
    ref = mj.mmest(y, cofactor=cov[["c"]], x=g, var_list=var_list, z_list=z_list,
                   algorithm="newton", verbose=False)  # fmt: skip
    assert list(res.columns[res.columns.str.startswith("sigma2_")]) == [
        "sigma2_ka", "sigma2_kb", "sigma2_block", "sigma2_error"]  # fmt: skip
    ok = (res.status == "ok").to_numpy()
    assert ok.sum() >= 38 and (res.n == rows.size).all()
    s2 = res[["sigma2_ka", "sigma2_kb", "sigma2_block", "sigma2_error"]].to_numpy()
    np.testing.assert_allclose(s2[ok], ref.sigma2_array[ok], rtol=1e-6, atol=1e-9 * ref.sigma2_array.max())
    np.testing.assert_allclose(res.beta[ok], ref.beta_array[ok, -1], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(res.se[ok], np.sqrt(ref.var_beta_array[ok, -1, -1]), rtol=1e-6)
    p_ref = _p_term(ref, "Xeffect")
    assert np.max(np.abs(np.log10(res.p_chi2[ok]) - np.log10(p_ref[ok]))) < 1e-6
    kr = _p_term(ref, "Xeffect", "KR")
    assert np.max(np.abs(np.log10(res.p_kr[ok]) - np.log10(kr[ok]))) < 1e-6
    assert (res.ddf_kr[ok] < rows.size - 3).all()  # KR's denominator df: below n - p


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_two_component_engine_is_the_exact_optimum(method):
    """One kinship + error with two marker columns per model (the rotated profiled engine):
    sigma2 to 1e-6 relative, log-likelihood to 1e-8 and beta to 1e-6 SE of ``mmest`` run to 1e-12."""
    from mm4lmm_jax._estimate import PreparedModel

    rng = np.random.default_rng(2)
    n, m = 150, 12
    w = rng.normal(size=(n, 300))
    kin = w @ w.T / 300
    x = rng.binomial(2, 0.3, size=(m, n, 2)).astype(float)
    c = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = c @ [1.0, 0.5] + rng.multivariate_normal(np.zeros(n), 0.8 * kin + 0.5 * np.eye(n))
    comps = {"K": kin, "E": np.eye(n)}
    eng = PreparedModel(y, c, ["(Intercept)", "c"], comps, method=method)
    assert eng.rotated
    res = eng.fit(x, [f"m{j}" for j in range(m)], ["g1", "g2"])
    ref = mj.mmest(y, cofactor=c[:, 1:], x=list(x), var_list=comps, method=method, crit_var=1e-12,
                   crit_loglik=1e-12, max_iter=100000, verbose=False)  # fmt: skip
    assert (res.status_array == 0).all()
    np.testing.assert_allclose(res.sigma2_array, ref.sigma2_array, rtol=1e-6)
    np.testing.assert_allclose(res.loglik_array, ref.loglik_array, rtol=0, atol=1e-8)
    se = np.sqrt(np.diagonal(ref.var_beta_array, axis1=1, axis2=2))
    assert np.max(np.abs(res.beta_array - ref.beta_array) / se) < 1e-6
    assert (res.loglik_array >= ref.loglik_array - 1e-10).all()


def test_gxe_agrees_with_frozen_gemma():
    """GEMMA 0.98.5 ``-gxe age -lmm 4`` with sex as covariate (tools/make_gemma_fixture.py): the
    interaction's Wald p within 2e-5 in log10 (measured 2.1e-6), beta within 2e-5 SE and SE within
    1e-5 (7 printed digits); the LRT within 1e-3 in log10 p (measured 5e-4): GEMMA's ML optimum is
    less precise than ours (at its printed ``l_mle`` of rs1 and rs2 the ML log-likelihood of the
    model is 3.0e-6 and 2.3e-6 below the optimum we find), while its Wald p, from the ReML optimum,
    agrees to 2e-6."""
    gemma = pd.read_csv(GEMMA / "small.gemma_gxe.assoc.txt", sep="\t")
    res = gwas(GEMMA / "small.pheno.tsv", GEMMA / "small", kinship=GEMMA / "small.cXX.txt",
               covariates=GEMMA / "small.covar.tsv", pheno_names=["trait1"], gxe="age", lrt=True,
               progress=False)  # fmt: skip
    _check_gxe(res, gemma)


def _check_gxe(res, gemma):
    assert list(res.snp) == list(gemma.rs) and (res.status == "ok").all()
    assert np.max(np.abs(np.log10(res.p_wald) - np.log10(gemma.p_wald))) < 2e-5
    assert np.max(np.abs(res.beta - gemma.beta) / gemma.se) < 2e-5
    assert np.max(np.abs(res.se / gemma.se - 1)) < 1e-5
    assert np.max(np.abs(np.log10(res.p_lrt) - np.log10(gemma.p_lrt))) < 1e-3
    assert (res.df == 1).all() and (res.df_joint == 2).all()


@pytest.mark.skipif(shutil.which("gemma") is None, reason="gemma not installed (.ci/run installs it)")
def test_gxe_agrees_with_gemma_run_now(tmp_path):
    """The same comparison with the installed GEMMA run in this test."""
    for name in ("small.bed", "small.bim", "small.fam", "small.cXX.txt", "small.gemma_gxe_covar.txt",
                 "small.gemma_env.txt"):  # fmt: skip
        shutil.copy(GEMMA / name, tmp_path / name)
    subprocess.run(
        ["gemma", "-bfile", "small", "-k", "small.cXX.txt", "-c", "small.gemma_gxe_covar.txt", "-gxe",
         "small.gemma_env.txt", "-lmm", "4", "-maf", "0", "-miss", "1", "-r2", "1", "-o", "now", "-outdir", "out"],
        cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    gemma = pd.read_csv(tmp_path / "out" / "now.assoc.txt", sep="\t")
    res = gwas(GEMMA / "small.pheno.tsv", GEMMA / "small", kinship=GEMMA / "small.cXX.txt",
               covariates=GEMMA / "small.covar.tsv", pheno_names=["trait1"], gxe="age", lrt=True,
               progress=False)  # fmt: skip
    _check_gxe(res, gemma)


def test_categorical_gxe_with_two_kinships_equals_mmest(data):
    """A text environment (3 sites: df 2) with kinships A and B: the interaction's Wald test and
    the joint test of marker + interaction as ``mmest``'s Type III tests of the formula
    ``~ c + site + Xeffect + Xeffect:site`` (1e-6 in log10 p), sigma2 to 1e-6."""
    res = _scan(data, covar_names=["c", "site"], gxe="site")
    rows, y, cov, g, var_list, z_list = _reference(data, random=())
    x = pd.DataFrame(g[:, :8], columns=[f"rs{j + 1}" for j in range(8)])
    ref = mj.mmest(y, cofactor=cov[["c", "site"]], formula="~ c + site + Xeffect + Xeffect:site", x=x,
                   var_list=var_list, algorithm="newton", verbose=False)  # fmt: skip
    part = res.iloc[:8]
    assert (part.status == "ok").all() and (part.df == 2).all() and (part.df_joint == 3).all()
    np.testing.assert_allclose(part[["sigma2_ka", "sigma2_kb", "sigma2_error"]], ref.sigma2_array, rtol=1e-6)
    p_int = _p_term(ref, "Xeffect:site")
    assert np.max(np.abs(np.log10(part.p_chi2) - np.log10(p_int))) < 1e-6
    # joint test: Wald of the marker's three coefficients
    beta, vb = ref.beta_array, ref.var_beta_array
    idx = [i for i, nm in enumerate(ref.coef_names[0]) if "Xeffect" in nm]
    stat = np.array([b[idx] @ np.linalg.solve(v[np.ix_(idx, idx)], b[idx]) for b, v in zip(beta, vb)])
    np.testing.assert_allclose(part.stat_joint, stat, rtol=1e-6)
    assert part.beta.isna().all()  # a 2-df interaction has no single beta


def test_continuous_gxe_effects_are_in_the_environment_units(data):
    """A numeric environment of mean 10: the interaction per unit of env and the marker's main
    effect at env = 0, as ``mmest`` with the raw column (beta and SE to 1e-6)."""
    res = _scan(data, kinship=data["root"] / "ka.npy", covar_names=["c", "env"], gxe="env")
    rows, y, cov, g, var_list, _ = _reference(data, names=("ka",), random=())
    x = [np.column_stack([g[:, j], g[:, j] * cov["env"]]) for j in range(6)]
    ref = mj.mmest(y, cofactor=cov[["c", "env"]], x=x, var_list=var_list, **TIGHT)
    part = res.iloc[:6]
    np.testing.assert_allclose(part.beta, ref.beta_array[:, -1], rtol=1e-6)
    np.testing.assert_allclose(part.se, np.sqrt(ref.var_beta_array[:, -1, -1]), rtol=1e-6)
    np.testing.assert_allclose(part.beta_marker, ref.beta_array[:, -2], rtol=1e-6)
    np.testing.assert_allclose(part.se_marker, np.sqrt(ref.var_beta_array[:, -2, -2]), rtol=1e-6)
    np.testing.assert_allclose(part.sigma2_ka, ref.sigma2_array[:, 0], rtol=1e-6)


def test_sets_equal_mmest_list_models(data, tmp_path):
    """Sets from a file (one set per line, or SET MARKER pairs): one joint Wald and LRT test per
    set as ``mmest`` with x a list of matrices (p to 1e-6 in log10, sigma2 to 1e-6); a set whose
    markers the selection removed reports n_markers 0; an unknown marker is an error."""
    (tmp_path / "sets.txt").write_text("geneA rs1 rs2 rs3\n# comment\ngeneB rs10 rs11\ngeneC rs30\n")
    (tmp_path / "pairs.txt").write_text("geneA rs1\ngeneA rs2\ngeneA rs3\ngeneB rs10\ngeneB rs11\ngeneC rs30\n")
    assert read_sets(tmp_path / "sets.txt") == read_sets(tmp_path / "pairs.txt")
    res = _scan(data, sets=tmp_path / "sets.txt", covar_names=["c"], lrt=True)
    rows, y, cov, g, var_list, _ = _reference(data, random=())
    x = {"geneA": g[:, 0:3], "geneB": g[:, 9:11], "geneC": g[:, 29:30]}
    ref = mj.mmest(y, cofactor=cov[["c"]], x=x, var_list=var_list, algorithm="newton", verbose=False)
    assert list(res.set) == ["geneA", "geneB", "geneC"] and list(res.df) == [3, 2, 1]
    beta, vb = ref.beta_array, ref.var_beta_array
    for i, p1 in enumerate([3, 2, 1]):
        b, v = beta[i, 2 : 2 + p1], vb[i, 2 : 2 + p1, 2 : 2 + p1]
        assert res.stat[i] == pytest.approx(b @ np.linalg.solve(v, b), rel=1e-6)
    np.testing.assert_allclose(res[["sigma2_ka", "sigma2_kb", "sigma2_error"]], ref.sigma2_array, rtol=1e-6)
    ml = mj.mmest(y, cofactor=cov[["c"]], x=x, var_list=var_list, method="ml", algorithm="newton", verbose=False)
    null = mj.mmest(y, cofactor=cov[["c"]], var_list=var_list, method="ml", **TIGHT)
    np.testing.assert_allclose(res.lrt, 2 * (ml.loglik_array - null.loglik_array[0]), rtol=1e-6)
    part = _scan(data, sets=tmp_path / "sets.txt", covar_names=["c"], select=Selection(exclude=["rs30"]))
    assert part.loc[part.set == "geneC", "n_markers"].item() == 0 and part.loc[2, "status"] != "ok"
    (tmp_path / "bad.txt").write_text("geneA rs1 rs999\n")
    with pytest.raises(InputError, match="rs999"):
        _scan(data, sets=tmp_path / "bad.txt", covar_names=["c"])


def test_loco_leaves_the_chromosome_out_of_the_grm_only(data):
    """LOCO with the GRM and kinship B: chromosome 2's markers as a scan given the GRM of
    chromosome 1's markers and B (B stays whole)."""
    src = open_plink(data["sim"].prefix)
    res = _scan(data, kinship=[None, data["root"] / "kb.npy"], loco=True, covar_names=["c"])
    pheno = pd.read_csv(data["sim"].pheno, sep="\t")
    rows = pheno["trait1"].notna().to_numpy()
    kin = kinship_matrix(src, select=Selection(chromosomes=["1"], keep=None))
    assert kin.n_markers == 20
    # the scan's GRM is over the analysed individuals: rebuild it from their genotypes
    g = src.read(np.flatnonzero(rows), 0, 20)
    g = np.where(np.isnan(g), np.nanmean(g, axis=0), g)
    z = (g - g.mean(0)) / g.std(0)
    k1 = np.full((src.n, src.n), np.nan)
    k1[np.ix_(rows, rows)] = z @ z.T / 20
    k1[~rows, :] = k1[:, ~rows] = 0.0
    k1[~rows, ~rows] = 1.0
    ref = _scan(data, kinship=[k1, data["root"] / "kb.npy"], covar_names=["c"], select=Selection(chromosomes=["2"]))
    loco2 = res[res.chr.astype(str) == "2"].reset_index(drop=True)
    np.testing.assert_allclose(loco2.p_wald, ref.p_wald, rtol=1e-6)
    np.testing.assert_allclose(loco2.sigma2_kb, ref.sigma2_kb, rtol=1e-6)


def test_monomorphic_missing_and_bad_options(data):
    """An all-missing or monomorphic marker is reported with its status and NaN; a factor
    column that does not exist, a one-level random effect, or a scan option with Dask are
    errors naming what is wrong."""
    rows, y, cov, g, _, _ = _reference(data, random=())
    geno = pd.DataFrame(np.column_stack([g[:, :3], np.ones(rows.size), np.full(rows.size, np.nan)]),
                        columns=["a", "b", "c3", "mono", "gone"])  # fmt: skip
    ids = data["cov"].IID.astype(str).to_numpy()[rows]
    geno.index = ids
    ph = pd.DataFrame({"y": y}, index=ids)
    cv = pd.DataFrame({"c": cov["c"].to_numpy(), "block": cov["block"].to_numpy()}, index=ids)
    ka = data["ka"][np.ix_(rows, rows)]
    kb = data["kb"][np.ix_(rows, rows)]
    res = gwas(ph, geno, kinship=[ka, kb], covariates=cv, random=["block"], progress=False)
    assert list(res.status) == ["ok", "ok", "ok", "monomorphic", "all missing"]
    assert res.iloc[3:][["beta", "p_wald", "sigma2_error"]].isna().all().all()
    with pytest.raises(InputError, match="nosuch"):
        gwas(ph, geno, kinship=ka, covariates=cv, random=["nosuch"], progress=False)
    with pytest.raises(InputError, match="one level"):
        gwas(ph, geno, kinship=ka, covariates=cv.assign(block="x"), random=["block"], progress=False)
    coded = cv.assign(e3=np.arange(rows.size) % 3 + 1)
    with pytest.warns(mj.errors.InputWarning, match="treated as continuous"):
        gwas(ph, geno.iloc[:, :1], kinship=ka, covariates=coded, covar_names=["c", "e3"], gxe="e3", progress=False)
    with pytest.raises(InputError, match="locally"):
        gwas(ph, geno, kinship=ka, covariates=cv, gxe="c", client=object(), progress=False)


def test_cli_two_kinships_random_and_kr(data, tmp_path, capsys):
    """``--kinship A --kinship B --random block --test kr`` writes the TSV with one sigma2 column
    per component and logs the model; ``--format gemma`` with ``--gxe`` is refused."""
    root = data["root"]
    base = ["gwas", "--bfile", data["sim"].prefix, "--pheno", data["sim"].pheno, "--pheno-name", "trait1",
            "--covar", str(root / "cov.tsv"), "--covar-name", "c", "--covar-name", "block", "--kinship",
            str(root / "ka.npy"), "--quiet", "--no-plots", "--chr", "1"]  # fmt: skip
    out = tmp_path / "two"
    assert main([*base, "--kinship", str(root / "kb.npy"), "--random", "block", "--test", "kr", "--out", str(out)]) == 0
    table = pd.read_csv(f"{out}.tsv", sep="\t")
    assert {"sigma2_ka", "sigma2_kb", "sigma2_block", "sigma2_error", "p_kr", "ddf_kr"} <= set(table.columns)
    assert len(table) == 20 and (table.status == "ok").all()
    log = Path(f"{out}.log").read_text()
    assert "variance components ka, kb, block, error" in log and "Kenward-Roger" in log
    assert main([*base, "--gxe", "env", "--format", "gemma", "--out", str(tmp_path / "g")]) == 2
    assert "--format gemma" in capsys.readouterr().err


def test_killed_model_scan_resumes_from_its_checkpoint(data, tmp_path):
    """A G x E scan with a checkpoint: its blocks are saved; a second run of the same inputs
    (one block lost, as if killed while it ran) takes the others from the folder and gives
    the same table; other inputs in the same folder are an error."""
    kw = dict(kinship=data["root"] / "ka.npy", covar_names=["c", "env"], gxe="env", chunk_size=16)
    first = _scan(data, checkpoint=tmp_path / "ck", **kw)
    blocks = sorted((tmp_path / "ck").glob("*.npz"))
    assert len(blocks) == 3
    blocks[1].unlink()
    again = _scan(data, checkpoint=tmp_path / "ck", **kw)
    assert again.attrs["n_blocks_resumed"] == 2
    pd.testing.assert_frame_equal(first, again)
    with pytest.raises(InputError, match="other inputs"):
        _scan(data, checkpoint=tmp_path / "ck", **{**kw, "gxe": "c", "covar_names": ["c", "env"]})
    # set scans: batches of chunk_size sets, each saved; a lost batch is refitted, the rest read
    (tmp_path / "sets.txt").write_text("".join(f"s{i} rs{i + 1} rs{i + 2}\n" for i in range(0, 30, 3)) + "one rs40\n")
    kw = dict(kinship=data["root"] / "ka.npy", covar_names=["c"], sets=tmp_path / "sets.txt", chunk_size=4)
    first = _scan(data, checkpoint=tmp_path / "sk", **kw)
    blocks = sorted((tmp_path / "sk").glob("*.npz"))
    assert len(blocks) == 3 and len(first) == 11 and (first.status == "ok").all()
    blocks[0].unlink()
    again = _scan(data, checkpoint=tmp_path / "sk", **kw)
    assert again.attrs["n_blocks_resumed"] == 2
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(first, _scan(data, **kw))


def test_hybrid_kinships_given_as_n_by_n_equal_mmest_with_incidences(data):
    """Hybrids: two parental kinships of 12 lines each, given as n x n ``Z K Z'`` (rank 12):
    factored back to incidences (the mixed-model equations), sigma2 and p to 1e-6 of ``mmest``
    with ``z_list`` and the parents' kinships."""
    rng = np.random.default_rng(11)
    rows, y, cov, g, _, _ = _reference(data, random=())
    n = rows.size
    kp = []
    for _ in range(2):
        w = rng.normal(size=(12, 40))
        kp.append(w @ w.T / 40 + 1e-3 * np.eye(12))
    zs = [np.eye(12)[rng.integers(0, 12, n)] for _ in range(2)]
    full = [z @ k @ z.T for z, k in zip(zs, kp)]
    y = y + zs[0] @ rng.normal(size=12) + zs[1] @ rng.normal(size=12)
    ids = data["cov"].IID.astype(str).to_numpy()[rows]
    geno = pd.DataFrame(g[:, :10], index=ids, columns=[f"m{j}" for j in range(10)])
    res = gwas(pd.DataFrame({"y": y}, index=ids), geno, kinship=full,
               covariates=pd.DataFrame({"c": cov["c"].to_numpy()}, index=ids), progress=False)  # fmt: skip
    ref = mj.mmest(y, cofactor=cov[["c"]], x=g[:, :10], var_list={"F": kp[0], "D": kp[1], "E": np.eye(n)},
                   z_list={"F": zs[0], "D": zs[1], "E": None}, algorithm="newton", verbose=False)  # fmt: skip
    assert (res.status == "ok").all()
    np.testing.assert_allclose(res[["sigma2_K1", "sigma2_K2", "sigma2_error"]], ref.sigma2_array, rtol=1e-6)
    assert np.max(np.abs(np.log10(res.p_chi2) - np.log10(_p_term(ref, "Xeffect")))) < 1e-6
