"""Genotype formats (PLINK 2, BGEN, VCF/BCF, BIMBAM), selection, kinship files and output formats.

The files in ``tests/fixtures/formats`` are the bundled PLINK example converted by PLINK 2 and
bcftools (``tools/make_format_fixtures.py``): hard calls give the .bed scan's numbers exactly;
dosages are used as dosages.  GEMMA's own BIMBAM example (BXD) is checked against GEMMA."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mm4lmm_jax as mj
from mm4lmm_jax.cli import main
from mm4lmm_jax.errors import InputError
from mm4lmm_jax.gwas import (
    Selection,
    kinship_matrix,
    open_bgen,
    open_bimbam,
    open_pfile,
    open_plink,
    open_vcf,
    write_kinship,
)
from mm4lmm_jax.gwas._io import ArraySource, array_source, as_float, reopen

FIX = Path(__file__).parent / "fixtures" / "formats"
BXD = Path(__file__).parent / "fixtures" / "bxd"
EXAMPLE = Path(mj.datasets.__file__).parent / "data" / "gwas" / "example"
PHENO, COVAR = f"{EXAMPLE}.pheno.tsv", f"{EXAMPLE}.covar.tsv"


def _scan(genotypes, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mj.gwas(PHENO, genotypes, covariates=COVAR, pheno_names=["trait1"], progress=False, **kw)


@pytest.fixture(scope="module")
def bed_scan():
    return _scan(str(EXAMPLE))


def _sources():
    return {
        "pgen": lambda: open_pfile(FIX / "ex"),
        "bgen": lambda: open_bgen(FIX / "ex.bgen", FIX / "ex.sample", ref="last"),
        "vcf": lambda: open_vcf(FIX / "ex.vcf.gz"),
        "bcf": lambda: open_vcf(FIX / "ex.bcf"),
        "bimbam": lambda: open_bimbam(FIX / "ex.bimbam.txt.gz", _fam_ids(), FIX / "ex.bimbam.anno.txt"),
    }


def _fam_ids() -> pd.DataFrame:
    fam = pd.read_csv(f"{EXAMPLE}.fam", sep=r"\s+", header=None, dtype=str)
    return pd.DataFrame({"FID": fam[0], "IID": fam[1]})


@pytest.mark.parametrize("fmt", list(_sources()))
def test_every_format_reads_the_bed_genotypes(fmt):
    """Blocks, any-order marker reads and row subsets equal the .bed's (hard calls: exactly),
    the marker table (a1 = counted allele) too; a worker reopening the source reads the same."""
    src = _sources()[fmt]()
    bed = open_plink(EXAMPLE)
    rows, sub = np.arange(bed.n), np.arange(1, bed.n, 3)
    want = as_float(bed.read_counts(rows, 0, bed.m))
    np.testing.assert_array_equal(as_float(src.read_counts(rows, 0, src.m)), want)
    np.testing.assert_array_equal(as_float(src.read_counts(sub, 37, 101)), want[sub, 37:101])
    picks = np.array([399, 5, 2, 5, 0])
    np.testing.assert_array_equal(as_float(src.read_markers(sub, picks)), want[np.ix_(sub, picks)])
    np.testing.assert_array_equal(src.read(rows, 10, 20), want[:, 10:20])  # after a read further on
    cols = ["snp", "pos", "a1", "a2"]
    pd.testing.assert_frame_equal(src.snps[cols].astype(str), bed.snps[cols].astype(str))
    assert list(src.snps.chr.astype(str)) == list(bed.snps.chr.astype(str))
    spec = src.spec()
    if spec is not None:  # formats opened by workers (Dask) themselves
        np.testing.assert_array_equal(as_float(reopen(spec).read_counts(sub, 0, 64)), want[sub, :64])


@pytest.mark.parametrize("fmt", ["pgen", "bgen", "vcf", "bimbam"])
def test_every_format_scans_like_the_bed(fmt, bed_scan):
    """The scan of each format equals the .bed scan (same p-values, effects, columns)."""
    res = _scan(_sources()[fmt]())
    for col in ("p_wald", "beta", "se", "sigma2_g", "af"):
        np.testing.assert_allclose(res[col], bed_scan[col], rtol=1e-10, atol=1e-14)
    assert (res[["snp", "a1", "a2"]] == bed_scan[["snp", "a1", "a2"]]).all().all()


@pytest.mark.parametrize("name, compression", [("ex16", 1), ("ex13", 2)])
def test_bgen_16_bit_and_zstd(name, compression):
    """16-bit BGEN 1.2 (zlib: decoded by our block decoder) and 1.3 (zstd: by cbgen): the .bed's
    counts for either REF convention (the counted allele is ALT = a1)."""
    bed = open_plink(EXAMPLE)
    rows = np.arange(bed.n)
    want = as_float(bed.read_counts(rows, 0, 60))
    for ref in ("first", "last"):
        src = open_bgen(FIX / f"{name}.bgen", FIX / f"{name}.sample", ref=ref)
        assert src.compression == compression and src.m == 60
        got = src.read(rows, 0, 60)
        same = list(src.snps.a1) == list(bed.snps.a1[:60])
        np.testing.assert_allclose(got, want if same else 2.0 - want, atol=1e-15)


def test_pfile_with_plink1_style_pvar_and_psam(tmp_path):
    """PLINK 2 accepts a .pvar / .psam without header in .bim / .fam layout: so do we."""
    shutil.copyfile(FIX / "ex.pgen", tmp_path / "h.pgen")
    shutil.copyfile(f"{EXAMPLE}.bim", tmp_path / "h.pvar")
    shutil.copyfile(f"{EXAMPLE}.fam", tmp_path / "h.psam")
    src, bed = open_pfile(tmp_path / "h"), open_plink(EXAMPLE)
    pd.testing.assert_frame_equal(src.snps.astype(str), bed.snps.astype(str))
    assert list(src.fid) == list(bed.fid) and list(src.iid) == list(bed.iid)
    rows = np.arange(bed.n)
    np.testing.assert_array_equal(src.read_counts(rows, 0, bed.m), bed.read_counts(rows, 0, bed.m))


def test_paths_open_by_extension(bed_scan):
    """gwas() takes a PLINK 2 prefix or a VCF path directly; BGEN and BIMBAM paths say how to
    open them (they need more than a path)."""
    np.testing.assert_allclose(_scan(str(FIX / "ex")).p_wald, bed_scan.p_wald, rtol=1e-10)
    np.testing.assert_allclose(_scan(str(FIX / "ex.vcf.gz")).p_wald, bed_scan.p_wald, rtol=1e-10)
    for path, hint in ((FIX / "ex.bgen", "open_bgen"), (FIX / "ex.bimbam.geno.txt.gz", "open_bimbam")):
        with pytest.raises(InputError, match=hint):
            mj.gwas(PHENO, str(path), progress=False)


def test_dosages_are_used_as_dosages():
    """A VCF's DS field and PLINK 2's import of it (dosages stored at 1/16384) give the same
    dosages to PLINK's resolution, and the scan of the VCF's dosages equals the scan of the same
    numbers as an array; hard calls would differ."""
    vcf = open_vcf(FIX / "ds.vcf.gz", field="DS")
    pgen = open_pfile(FIX / "ds")
    assert pgen.dosage and vcf.read_counts(np.arange(vcf.n), 0, 3).dtype == np.float64
    rows = np.arange(vcf.n)
    d_vcf, d_pgen = vcf.read(rows, 0, vcf.m), pgen.read(rows, 0, pgen.m)
    np.testing.assert_array_equal(np.isnan(d_vcf), np.isnan(d_pgen))
    assert np.nanmax(np.abs(d_vcf - d_pgen)) <= 0.5 / 16384 + 1e-6
    assert np.nanmax(np.abs(d_vcf - np.round(d_vcf))) > 0.2  # really dosages
    ids = pd.Index(vcf.iid.astype(str), name="IID")
    pheno = pd.read_csv(PHENO, sep="\t").set_index("IID")["trait1"]
    covar = pd.read_csv(COVAR, sep="\t").set_index("IID")[["age", "sex"]]
    kw = dict(pheno_names=None, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_vcf = mj.gwas(pheno, vcf, covariates=covar, **kw)
        arr = pd.DataFrame(d_vcf, index=ids, columns=vcf.snps.snp)
        from_array = mj.gwas(pheno, arr, covariates=covar, **kw)
        from_pgen = mj.gwas(pheno, pgen, covariates=covar, **kw)
    np.testing.assert_allclose(from_vcf.p_wald, from_array.p_wald, rtol=1e-10)
    assert np.max(np.abs(np.log10(from_vcf.p_wald) - np.log10(from_pgen.p_wald))) < 2e-3


def test_bimbam_agrees_with_gemma_on_its_own_example():
    """GEMMA's BXD example in BIMBAM (0.5 = heterozygous dosages kept): our centred kinship of it
    and the exact scan with sex as covariate equal GEMMA 0.98.5's (-gk 1, then -lmm 1) to its
    printed precision; individuals in the phenotype file's order, positions from the annotation."""
    src = open_bimbam(FIX / "BXD_geno.txt.gz", BXD / "pheno.tsv", FIX / "BXD_snps.txt")
    kin = kinship_matrix(src, kind="centred")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = mj.gwas(BXD / "pheno.tsv", src, kinship=kin.matrix, covariates=BXD / "covar.tsv", progress=False,
                       rotation_dtype="float64")  # fmt: skip
    gemma = pd.read_csv(FIX / "bxd_bimbam.gemma.assoc.txt.gz", sep="\t")
    assert list(ours.snp) == list(gemma.rs) and (ours.pos.to_numpy() == gemma.ps.to_numpy()).all()
    assert list(ours.chr.astype(str)) == list(gemma.chr.astype(str)) and (ours.a1 == gemma.allele1).all()
    assert np.max(np.abs(np.log10(ours.p_wald) - np.log10(gemma.p_wald))) < 2e-6
    assert np.max(np.abs(ours.beta - gemma.beta) / gemma.se) < 2e-6
    assert np.max(np.abs(ours.af - gemma.af)) <= 5e-4 + 1e-12


def test_bimbam_needs_one_value_per_individual(tmp_path):
    ids = _fam_ids().iloc[:-1]
    with pytest.raises(InputError, match="299 individuals"):
        open_bimbam(FIX / "ex.bimbam.txt.gz", ids)


def test_format_errors_name_the_problem(tmp_path):
    with pytest.raises(InputError, match="REF"):
        open_bgen(FIX / "ex.bgen", FIX / "ex.sample", ref="unknown")
    multi = tmp_path / "multi.vcf"
    lines = gzip.open(FIX / "ex.vcf.gz", "rt").read().split("\n")
    body = [ln for ln in lines if ln and not ln.startswith("#")]
    head = [ln for ln in lines if ln.startswith("#")]
    f = body[3].split("\t")
    f[4] = f[4] + ",T"
    multi.write_text("\n".join([*head, *body[:3], "\t".join(f)]) + "\n")
    with pytest.raises(InputError, match="ALT alleles.*bcftools norm"):
        open_vcf(multi)
    with pytest.raises(InputError, match="no FORMAT field 'DS'"):
        open_vcf(FIX / "ex.vcf.gz", field="DS")
    with pytest.raises(InputError, match="id-delim"):
        _scan(open_vcf(FIX / "ex.vcf.gz").__class__(None, np.array(["F4_I1"] * 1), None, "", "GT"))


# ---------------------------------------------------------------- selection -------------


@pytest.fixture(scope="module")
def fixed_kinship():
    return kinship_matrix(str(EXAMPLE)).matrix


def test_marker_selection_equals_the_subset(tmp_path, fixed_kinship):
    """With the kinship fixed, each marker's results do not depend on the others: a selection
    gives the full scan's rows of the kept markers, and keeps exactly the markers the filters'
    definitions keep (computed here from the genotypes of the kept individuals)."""
    bed = open_plink(EXAMPLE)
    g = as_float(bed.read_counts(np.arange(bed.n), 0, bed.m))
    g[::7, ::5] = np.nan
    n_obs = (~np.isnan(g)).sum(0)
    af = np.nansum(g, 0) / (2 * n_obs)
    maf, mac, miss = (
        np.minimum(af, 1 - af),
        np.minimum(np.nansum(g, 0), 2 * n_obs - np.nansum(g, 0)),
        1 - n_obs / len(g),
    )
    names = bed.snps.snp.to_numpy()
    arr = ArraySource(bed.fid, bed.iid, bed.snps, g)
    (tmp_path / "ext.txt").write_text("\n".join(names[::2]) + "\n")
    (tmp_path / "exc.txt").write_text("\n".join(names[::6]) + "\n")
    sel = Selection(extract=tmp_path / "ext.txt", exclude=tmp_path / "exc.txt", chromosomes=["1"], maf=0.1, mac=30,
                    geno=0.1)  # fmt: skip
    chrom = bed.snps.chr.astype(str).to_numpy()
    expect = np.isin(names, names[::2]) & ~np.isin(names, names[::6]) & (chrom == "1")
    expect &= (miss <= 0.1) & (maf >= 0.1) & (mac >= 30)
    res = _scan(arr, kinship=fixed_kinship, select=sel, rotation_dtype="float64")
    assert list(res.snp) == list(names[expect])
    removed = res.attrs["selection"]["markers_removed"]
    assert set(removed) == {"--chr", "--extract", "--exclude", "--geno", "--maf", "--mac"}
    assert (
        sum(removed.values()) == len(names) - expect.sum() and res.attrs["selection"]["n_markers_kept"] == expect.sum()
    )
    whole = _scan(arr, kinship=fixed_kinship, rotation_dtype="float64").set_index("snp").loc[list(res.snp)]
    np.testing.assert_allclose(res.p_wald, whole.p_wald, rtol=1e-10)


def test_sample_selection_is_as_if_unphenotyped(tmp_path, fixed_kinship):
    """--keep/--remove drop individuals from the analysis (the scan of a phenotype with them set
    missing), counted apart from missing phenotypes; FID IID or IID lines; the GRM is built over
    the remaining individuals."""
    pheno = pd.read_csv(PHENO, sep="\t")
    out = pheno.IID.iloc[[0, 3, 10]].tolist()
    (tmp_path / "rm.txt").write_text(f"{pheno.FID[0]} {out[0]}\n{out[1]}\n{pheno.FID[10]}\t{out[2]}\nF0 nobody\n")
    res = _scan(str(EXAMPLE), kinship=fixed_kinship, select=Selection(remove=tmp_path / "rm.txt"))
    masked = pheno.copy()
    masked.loc[masked.IID.isin(out), "trait1"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = mj.gwas(masked, str(EXAMPLE), covariates=COVAR, pheno_names=["trait1"], kinship=fixed_kinship,
                      progress=False)  # fmt: skip
    np.testing.assert_allclose(res.p_wald, ref.p_wald, rtol=1e-10)
    sel = res.attrs["selection"]
    assert sel["n_samples_removed"] == 3 and sel["n_samples_listed_not_genotyped"] == 1
    assert res.attrs["n_dropped_missing"]["trait1"] == ref.attrs["n_dropped_missing"]["trait1"] - 3 + (
        int(pheno.trait1.iloc[[0, 3, 10]].isna().sum())
    )
    keep = tmp_path / "keep.txt"
    keep.write_text("\n".join(pheno.IID.iloc[:150]) + "\n")
    kept = _scan(str(EXAMPLE), select=Selection(keep=keep))
    assert kept.attrs["n_analysed"]["trait1"] <= 150
    with pytest.raises(InputError, match="no listed individual"):
        _scan(str(EXAMPLE), select=Selection(keep=["nobody"]))
    with pytest.raises(InputError, match="removes every marker"):
        _scan(str(EXAMPLE), select=Selection(mac=1e9))
    with pytest.raises(InputError, match="maf must be in"):
        Selection(maf=0.7)


# ---------------------------------------------------------------- kinships --------------


def test_kinship_definitions_are_gemmas():
    """standardised = GEMMA -gk 2 (mean-imputed, centred, divided by the standard deviation over
    all individuals), centred = -gk 1; monomorphic and all-missing markers left out."""
    rng = np.random.default_rng(3)
    g = rng.integers(0, 3, size=(40, 30)).astype(float)
    g[rng.random(g.shape) < 0.1] = np.nan
    g[:, 0] = 1.0
    g[:, 1] = np.nan
    src = array_source(g)
    x = g[:, 2:]
    mu = np.nanmean(x, 0)
    c = np.where(np.isnan(x), mu, x) - mu
    for kind, w in (("centred", c), ("standardised", c / np.sqrt((c**2).mean(0)))):
        kin = kinship_matrix(src, kind=kind)
        assert kin.n_markers == 28
        np.testing.assert_allclose(kin.matrix, w @ w.T / 28, rtol=1e-12, atol=1e-14)


@pytest.mark.skipif(shutil.which("gemma") is None, reason="gemma not installed (.ci/run installs it)")
@pytest.mark.parametrize("gk", [1, 2])
def test_kinship_equals_gemma_run_now(tmp_path, gk):
    """`mm4lmm grm --gk K` on the BXD .bed equals `gemma -gk K -maf 0 -miss 1` (its 10 digits)."""
    for ext in (".bed", ".bim", ".fam"):
        shutil.copyfile(BXD / f"bxd{ext}", tmp_path / f"bxd{ext}")
    subprocess.run(["gemma", "-bfile", "bxd", "-gk", str(gk), "-maf", "0", "-miss", "1", "-o", "g", "-outdir", "."],
                   cwd=tmp_path, check=True, capture_output=True)  # fmt: skip
    theirs = np.loadtxt(tmp_path / f"g.{'cXX' if gk == 1 else 'sXX'}.txt")
    assert main(["grm", "--bfile", str(tmp_path / "bxd"), "--gk", str(gk), "--format", "gemma", "--quiet",
                 "--out", str(tmp_path / "ours")]) == 0  # fmt: skip
    ours = np.loadtxt(tmp_path / f"ours.{'cXX' if gk == 1 else 'sXX'}.txt")
    np.testing.assert_allclose(ours, theirs, atol=5e-9 * np.abs(theirs).max())


def test_rel_bin_is_matched_by_id(tmp_path, fixed_kinship, bed_scan):
    """A .rel.bin written by `mm4lmm grm` is read back by ID: rows shuffled in the file give the
    same scan; an analysed individual missing from it is an error naming them."""
    kin = kinship_matrix(str(EXAMPLE))
    perm = np.random.default_rng(0).permutation(len(kin.iid))
    shuffled = type(kin)(kin.matrix[np.ix_(perm, perm)], kin.fid[perm], kin.iid[perm], kin.kind, kin.n_markers)
    paths = write_kinship(shuffled, str(tmp_path / "k"), "rel-bin")
    assert paths == [str(tmp_path / "k.rel.bin"), str(tmp_path / "k.rel.id")]
    res = _scan(str(EXAMPLE), kinship=paths[0])
    ref = _scan(str(EXAMPLE), kinship=kin.matrix)
    np.testing.assert_allclose(res.p_wald, ref.p_wald, rtol=1e-10)
    for fmt, name in (("gemma", "k.sXX.txt"), ("npy", "k.npy")):
        write_kinship(kin, str(tmp_path / "k"), fmt)
        np.testing.assert_allclose(_scan(str(EXAMPLE), kinship=tmp_path / name).p_wald, ref.p_wald, rtol=1e-9)
    drop = type(kin)(kin.matrix[1:, 1:], kin.fid[1:], kin.iid[1:], kin.kind, kin.n_markers)
    write_kinship(drop, str(tmp_path / "d"), "rel-bin")
    pheno = pd.read_csv(PHENO, sep="\t")
    if pd.notna(pheno.trait1[0]):
        with pytest.raises(InputError, match=f"{kin.iid[0]!r}"):
            _scan(str(EXAMPLE), kinship=tmp_path / "d.rel.bin")


def test_loco_kinship_files_equal_loco(tmp_path):
    """LOCO kinships written by `mm4lmm grm --loco --keep <analysed>` and given back with
    --loco-kinship give the scan of --loco (which builds them over the analysed individuals);
    both definitions (GEMMA's -loco uses the centred one)."""
    pheno = pd.read_csv(PHENO, sep="\t")
    covar = pd.read_csv(COVAR, sep="\t")
    ok = pheno.trait1.notna() & covar[["age", "sex"]].notna().all(axis=1)
    (tmp_path / "keep.txt").write_text("".join(f"{f} {i}\n" for f, i in zip(pheno.FID[ok], pheno.IID[ok])))
    for kind in ("centred",):  # GEMMA's -loco definition (the standardised GRM's LOCO: tests/test_gwas.py)
        args = ["grm", "--bfile", str(EXAMPLE), "--kind", kind, "--loco", "--keep", str(tmp_path / "keep.txt"),
                "--quiet", "--out", str(tmp_path / kind)]  # fmt: skip
        assert main(args) == 0
        common = ["gwas", "--bfile", str(EXAMPLE), "--pheno", PHENO, "--pheno-name", "trait1", "--covar", COVAR,
                  "--quiet", "--no-plots"]  # fmt: skip
        assert main([*common, "--grm", kind, "--loco", "--out", str(tmp_path / f"a{kind}")]) == 0
        pattern = str(tmp_path / f"{kind}.loco.{{chr}}.rel.bin")
        assert main([*common, "--loco-kinship", pattern, "--out", str(tmp_path / f"b{kind}")]) == 0
        a = pd.read_csv(tmp_path / f"a{kind}.tsv", sep="\t")
        b = pd.read_csv(tmp_path / f"b{kind}.tsv", sep="\t")
        np.testing.assert_allclose(a.p_wald, b.p_wald, rtol=1e-6)


# ---------------------------------------------------------------- outputs ---------------


def test_output_formats(tmp_path):
    """--format gwas-ssf: PREFIX.tsv.gz with the standard's columns in order and its metadata
    YAML (md5 of the file); --format gemma: GEMMA's .assoc.txt columns (one file per trait);
    --out NAME.tsv.gz: the TSV compressed; every number equals the plain TSV's."""
    common = ["gwas", "--bfile", str(EXAMPLE), "--pheno", PHENO, "--covar", COVAR, "--grm", "--quiet", "--no-plots"]
    assert main([*common, "--out", str(tmp_path / "plain")]) == 0
    plain = pd.read_csv(tmp_path / "plain.tsv", sep="\t")
    assert main([*common, "--out", str(tmp_path / "z.tsv.gz")]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "z.tsv.gz", sep="\t"), plain)
    assert (tmp_path / "z.log").exists() and not (tmp_path / "z.tsv").exists()
    assert main([*common, "--format", "gwas-ssf", "--out", str(tmp_path / "ssf")]) == 0
    for trait in ("trait1", "trait2"):
        path = tmp_path / f"ssf.{trait}.tsv.gz"
        ssf = pd.read_csv(path, sep="\t")
        assert list(ssf.columns[:8]) == ["chromosome", "base_pair_location", "effect_allele", "other_allele", "beta",
                                         "standard_error", "effect_allele_frequency", "p_value"]  # fmt: skip
        part = plain[plain.trait == trait].reset_index(drop=True)
        np.testing.assert_array_equal(ssf.p_value, part.p_wald)
        assert (ssf.effect_allele == part.a1).all() and (ssf.chromosome == part.chr).all()
        meta = Path(f"{path}-meta.yaml").read_text()
        assert f"data_file_md5sum: {hashlib.md5(path.read_bytes()).hexdigest()}" in meta
        assert "file_type: GWAS-SSF v1.0" in meta and f"sample_size: {part.n[0]}" in meta
    assert main([*common, "--format", "gemma", "--out", str(tmp_path / "gem")]) == 0
    gem = pd.read_csv(tmp_path / "gem.trait1.assoc.txt", sep="\t")
    part = plain[plain.trait == "trait1"].reset_index(drop=True)
    assert list(gem.columns) == ["chr", "rs", "ps", "n_miss", "allele1", "allele0", "af", "beta", "se", "logl_H1",
                                 "l_remle", "p_wald"]  # fmt: skip
    np.testing.assert_array_equal(gem.p_wald, part.p_wald)
    np.testing.assert_allclose(gem.l_remle, part.sigma2_g / part.sigma2_e, rtol=1e-15)
    assert gem.logl_H1.isna().all()


def test_cli_reads_every_format(tmp_path, bed_scan):
    """`mm4lmm gwas` with --pfile, --bgen --sample --bgen-ref, --vcf, --bimbam --bimbam-anno: the
    .bed scan's p-values; a BGEN without --bgen-ref is an error (exit 2) saying what to give."""
    common = ["gwas", "--pheno", PHENO, "--pheno-name", "trait1", "--covar", COVAR, "--quiet", "--no-plots",
              "--kinship", str(tmp_path / "k.rel.bin")]  # fmt: skip
    write_kinship(kinship_matrix(str(EXAMPLE)), str(tmp_path / "k"), "rel-bin")
    ref = None
    for i, opts in enumerate([
        ["--bfile", str(EXAMPLE)],
        ["--pfile", str(FIX / "ex")],
        ["--bgen", str(FIX / "ex.bgen"), "--sample", str(FIX / "ex.sample"), "--bgen-ref", "last"],
        ["--vcf", str(FIX / "ex.bcf")],
        ["--bimbam", str(FIX / "ex.bimbam.txt.gz"), "--bimbam-anno", str(FIX / "ex.bimbam.anno.txt")],
    ]):  # fmt: skip
        if opts[0] == "--bimbam":  # BIMBAM individuals follow the phenotype file's rows: one row per .fam line
            pheno = _fam_ids().merge(pd.read_csv(PHENO, sep="\t"), how="left")
            pheno.to_csv(tmp_path / "p.tsv", sep="\t", index=False, na_rep="NA")
            opts = [*opts, "--pheno", str(tmp_path / "p.tsv")]
        assert main([*common, *opts, "--out", str(tmp_path / f"r{i}")]) == 0
        res = pd.read_csv(tmp_path / f"r{i}.tsv", sep="\t")
        ref = res if ref is None else ref
        np.testing.assert_allclose(res.p_wald, ref.p_wald, rtol=1e-10)
    assert main([*common, "--bgen", str(FIX / "ex.bgen"), "--out", str(tmp_path / "x")]) == 2
