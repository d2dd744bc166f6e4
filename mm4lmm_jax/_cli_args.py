"""Command-line options shared by ``mm4lmm gwas`` and ``mm4lmm grm``: the genotype file (one
of five formats) and the selection of individuals and markers."""

from __future__ import annotations

import argparse

from .errors import InputError


def add_genotype_args(p: argparse.ArgumentParser) -> None:
    """One genotype input (required) and its format's options."""
    g = p.add_argument_group("genotypes (one of)")
    one = g.add_mutually_exclusive_group(required=True)
    one.add_argument("--bfile", metavar="PREFIX", help="PLINK 1 PREFIX.bed/.bim/.fam (A1 counted)")
    one.add_argument(
        "--pfile", metavar="PREFIX", help="PLINK 2 PREFIX.pgen/.pvar/.psam (ALT counted; dosages when stored)"
    )
    one.add_argument("--bgen", metavar="FILE", help="BGEN 1.2/1.3 (ALT dosages; give --bgen-ref, and --sample)")
    one.add_argument(
        "--vcf", metavar="FILE", help="VCF or BCF (.vcf, .vcf.gz, .bcf): ALT counts from GT, or --vcf-field"
    )
    one.add_argument(
        "--bimbam",
        metavar="FILE",
        help="BIMBAM mean genotypes (GEMMA's -g: 'snp, a1, a2, values...', a1 counted), one value per individual "
        "of --pheno in its order (as GEMMA); annotation with --bimbam-anno",
    )
    g.add_argument("--sample", metavar="FILE", help="the BGEN's Oxford .sample file (ID_1 = FID, ID_2 = IID)")
    g.add_argument(
        "--bgen-ref",
        choices=["first", "last"],
        help="which BGEN allele is REF (required with --bgen, as PLINK 2's ref-first/ref-last): 'first' for UK "
        "Biobank files, 'last' for PLINK exports",
    )
    g.add_argument(
        "--vcf-field", default="GT", metavar="FIELD", help="GT (default) or a dosage FORMAT field such as DS"
    )
    g.add_argument("--id-delim", metavar="CHAR", help="split VCF sample names FID<CHAR>IID (default: names are IIDs)")
    g.add_argument("--bimbam-anno", metavar="FILE", help="GEMMA's SNP annotation for --bimbam: 'snp pos chr' per line")


def add_selection_args(p: argparse.ArgumentParser) -> None:
    """PLINK's sample and marker filters (applied to the scan and to a GRM from the genotypes)."""
    s = p.add_argument_group("selection (as PLINK; counts in the log)")
    s.add_argument("--keep", metavar="FILE", help="keep only these individuals (FID IID, or IID, per line)")
    s.add_argument("--remove", metavar="FILE", help="remove these individuals (FID IID, or IID, per line)")
    s.add_argument("--extract", metavar="FILE", help="keep only these markers (one ID per line)")
    s.add_argument("--exclude", metavar="FILE", help="remove these markers (one ID per line)")
    s.add_argument(
        "--chr", action="append", metavar="LIST", help="keep markers on these chromosomes (comma list; repeat)"
    )
    s.add_argument("--maf", type=float, metavar="X", help="remove markers with minor-allele frequency below X")
    s.add_argument("--mac", type=float, metavar="N", help="remove markers with minor-allele count below N")
    s.add_argument("--geno", type=float, metavar="X", help="remove markers with a missing rate above X")


def genotype_path(args) -> str:
    return args.bfile or args.pfile or args.bgen or args.vcf or args.bimbam


def open_source(args, ids_file: str | None = None):
    """The genotype source named by the options (``ids_file``: the table whose rows name the
    BIMBAM individuals)."""
    from .gwas import open_bgen, open_bimbam, open_pfile, open_plink, open_vcf

    if args.bgen_ref and not args.bgen:
        raise InputError("--bgen-ref is for --bgen")
    if args.sample and not args.bgen:
        raise InputError("--sample is for --bgen")
    if args.bimbam_anno and not args.bimbam:
        raise InputError("--bimbam-anno is for --bimbam")
    if (args.vcf_field != "GT" or args.id_delim) and not args.vcf:
        raise InputError("--vcf-field and --id-delim are for --vcf")
    if args.bfile:
        return open_plink(args.bfile)
    if args.pfile:
        return open_pfile(args.pfile)
    if args.bgen:
        if not args.bgen_ref:
            raise InputError(
                f"--bgen {args.bgen}: say which allele is REF: --bgen-ref first (UK Biobank) or last (PLINK exports)"
            )
        return open_bgen(args.bgen, args.sample, ref=args.bgen_ref)
    if args.vcf:
        return open_vcf(args.vcf, field=args.vcf_field, id_delim=args.id_delim)
    if ids_file is None:
        raise InputError("--bimbam carries no individual IDs: its values follow the rows of --pheno")
    return open_bimbam(args.bimbam, ids_file, args.bimbam_anno)


def selection(args):
    """The :class:`~mm4lmm_jax.gwas.Selection` of the options (None when none is given)."""
    from .gwas import Selection

    chromosomes = None
    if args.chr:
        chromosomes = [c.strip() for item in args.chr for c in item.split(",") if c.strip()]
    values = dict(
        keep=args.keep,
        remove=args.remove,
        extract=args.extract,
        exclude=args.exclude,
        chromosomes=chromosomes,
        maf=args.maf,
        mac=args.mac,
        geno=args.geno,
    )
    return Selection(**values) if any(v is not None for v in values.values()) else None


__all__ = ["add_genotype_args", "add_selection_args", "genotype_path", "open_source", "selection"]
