"""Scan results in the formats downstream tools read: our TSV (optionally gzip-compressed),
the GWAS Catalog's summary-statistics standard (GWAS-SSF 1.0: ``.tsv.gz`` + metadata YAML) and
GEMMA's ``.assoc.txt`` columns."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil

import numpy as np
import pandas as pd

from ..errors import InputError
from ._io import write_tsv

#: ``--format`` values.
FORMATS = ("tsv", "gwas-ssf", "gemma")

#: GWAS-SSF 1.0 columns: the mandatory ones in the standard's order, then optional ones.
SSF_COLUMNS = [
    "chromosome",
    "base_pair_location",
    "effect_allele",
    "other_allele",
    "beta",
    "standard_error",
    "effect_allele_frequency",
    "p_value",
    "variant_id",
    "rsid",
    "n",
]

#: GEMMA ``-lmm 1`` output columns.
GEMMA_COLUMNS = ["chr", "rs", "ps", "n_miss", "allele1", "allele0", "af", "beta", "se", "logl_H1", "l_remle", "p_wald"]

_SSF_CHROMOSOMES = {"X": 23, "Y": 24, "XY": 23, "MT": 25, "M": 25, "PAR1": 23, "PAR2": 23}


def ssf_table(part: pd.DataFrame) -> pd.DataFrame:
    """One trait's rows as GWAS-SSF columns: chromosomes as the standard's integers (X = 23,
    Y = 24, MT = 25; ``chr`` prefixes dropped), the counted allele ``a1`` as effect allele,
    ``p_wald`` as p_value, ``n`` analysed; rows of other status have NA statistics."""
    chrom = part["chr"].astype(str).str.replace(r"^chr", "", regex=True, case=False)
    number = pd.to_numeric(chrom.str.upper().replace(_SSF_CHROMOSOMES), errors="coerce")
    bad = number.isna() | (number < 1) | (number > 25)
    if bad.any():
        raise InputError(
            f"GWAS-SSF needs chromosomes 1-22, X, Y or MT; marker {part['snp'].iloc[int(np.argmax(bad))]!r} is on "
            f"{part['chr'].iloc[int(np.argmax(bad))]!r} (select chromosomes with --chr, or write --format tsv)"
        )
    rsid = part["snp"].astype(str)
    return pd.DataFrame(
        {
            "chromosome": number.astype(int).to_numpy(),
            "base_pair_location": part["pos"].to_numpy(),
            "effect_allele": part["a1"].to_numpy(),
            "other_allele": part["a2"].to_numpy(),
            "beta": part["beta"].to_numpy(),
            "standard_error": part["se"].to_numpy(),
            "effect_allele_frequency": part["af"].to_numpy(),
            "p_value": part["p_wald"].to_numpy(),
            "variant_id": (
                chrom + "_" + part["pos"].astype(str) + "_" + part["a2"].astype(str) + "_" + part["a1"].astype(str)
            ).to_numpy(),
            "rsid": rsid.where(rsid.str.match(r"^rs\d+$"), None).to_numpy(),
            "n": part["n"].to_numpy(),
        }
    )


def gemma_table(part: pd.DataFrame) -> pd.DataFrame:
    """One trait's rows as GEMMA ``-lmm 1`` columns (``allele1`` = the counted allele,
    ``l_remle`` = sigma2_g / sigma2_e).  ``logl_H1`` is NA: GEMMA's ReML log-likelihood adds
    ``log|X'X| / 2`` of each marker's design to ours (the ``loglik`` of the TSV), a term the
    scan does not compute."""
    return pd.DataFrame(
        {
            "chr": part["chr"].to_numpy(),
            "rs": part["snp"].to_numpy(),
            "ps": part["pos"].to_numpy(),
            "n_miss": part["n_miss"].to_numpy(),
            "allele1": part["a1"].to_numpy(),
            "allele0": part["a2"].to_numpy(),
            "af": part["af"].to_numpy(),
            "beta": part["beta"].to_numpy(),
            "se": part["se"].to_numpy(),
            "logl_H1": np.full(len(part), np.nan),
            "l_remle": (part["sigma2_g"] / part["sigma2_e"]).to_numpy(),
            "p_wald": part["p_wald"].to_numpy(),
        }
    )


def write_table(frame: pd.DataFrame, path: str, compress: bool | None = None) -> None:
    """:func:`~._io.write_tsv`, gzip-compressed when ``compress`` (default: when ``path`` ends
    in ``.gz``)."""
    if not (path.endswith(".gz") if compress is None else compress):
        write_tsv(frame, path)
        return
    plain = f"{path}.plain-{os.getpid()}"
    try:
        write_tsv(frame, plain)
        with open(plain, "rb") as src, gzip.open(path, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    finally:
        if os.path.exists(plain):
            os.remove(plain)


def ssf_metadata(data_path: str, part: pd.DataFrame, trait: str, meta: dict, software: str) -> str:
    """The GWAS-SSF metadata YAML of ``data_path`` (its name, md5, sample size, trait...)."""
    md5 = hashlib.md5()
    with open(data_path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            md5.update(chunk)
    n = int(meta["n_analysed"][trait])
    sorted_ = bool(
        (part["chr"].astype(str).to_numpy()[1:] != part["chr"].astype(str).to_numpy()[:-1]).sum() < 25
        and part.groupby("chr", sort=False)["pos"].apply(lambda p: p.is_monotonic_increasing).all()
    )
    lines = [
        f"data_file_name: {os.path.basename(data_path)}",
        "file_type: GWAS-SSF v1.0",
        f"data_file_md5sum: {md5.hexdigest()}",
        "is_harmonised: false",
        f"is_sorted: {'true' if sorted_ else 'false'}",
        "genome_assembly: unknown",
        "coordinate_system: 1-based",
        f"trait_description: [{_yaml_text(trait)}]",
        f"sample_size: {n}",
        "sample_ancestry: [unknown]",
        f"analysis_software: {_yaml_text(software)}",
        "effect_statistic: beta",
        "pvalue_is_neg_log10: false",
        f"date_metadata_last_modified: {pd.Timestamp.now().strftime('%Y-%m-%d')}",
    ]
    return "\n".join(lines) + "\n"


def _yaml_text(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


__all__ = ["FORMATS", "GEMMA_COLUMNS", "SSF_COLUMNS", "gemma_table", "ssf_metadata", "ssf_table", "write_table"]
