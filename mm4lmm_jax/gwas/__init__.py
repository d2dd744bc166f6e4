"""Genome-wide association scans: exact per-marker ReML fits of kinship + error models.

``gwas()`` in one call, or step by step: ``prepare_scan`` -> ``run_scan(plan, executor)``
(``LocalExecutor`` or ``DaskExecutor``) -> ``ScanResult``.  Genotypes from PLINK 1/2, BGEN,
VCF/BCF, BIMBAM or arrays (``open_*``); a :class:`Selection` of individuals and markers;
kinships from the genotypes with :func:`kinship_matrix` / :func:`write_kinship`."""

from ..errors import InputError
from ._formats import open_bgen, open_bimbam, open_genotypes, open_pfile, open_vcf
from ._grm import Kinship, kinship_matrix, write_kinship
from ._io import GenotypeSource, open_plink, read_kinship, read_table
from ._outputs import gemma_table, ssf_table
from ._scan import (
    RESULT_COLUMNS,
    DaskExecutor,
    LocalExecutor,
    ScanPlan,
    ScanResult,
    genomic_inflation,
    gwas,
    prepare_scan,
    run_scan,
)
from ._select import Selection

__all__ = [
    "RESULT_COLUMNS",
    "DaskExecutor",
    "GenotypeSource",
    "InputError",
    "Kinship",
    "LocalExecutor",
    "ScanPlan",
    "ScanResult",
    "Selection",
    "gemma_table",
    "genomic_inflation",
    "gwas",
    "kinship_matrix",
    "open_bgen",
    "open_bimbam",
    "open_genotypes",
    "open_pfile",
    "open_plink",
    "open_vcf",
    "prepare_scan",
    "read_kinship",
    "read_table",
    "run_scan",
    "ssf_table",
    "write_kinship",
]
