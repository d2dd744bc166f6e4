"""Genome-wide association scans: exact per-marker ReML fits of kinship + error models.

``gwas()`` in one call, or step by step: ``prepare_scan`` -> ``run_scan(plan, executor)``
(``LocalExecutor`` or ``DaskExecutor``) -> ``ScanResult``."""

from ..errors import InputError
from ._io import open_plink, read_kinship, read_table
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

__all__ = [
    "RESULT_COLUMNS",
    "DaskExecutor",
    "InputError",
    "LocalExecutor",
    "ScanPlan",
    "ScanResult",
    "genomic_inflation",
    "gwas",
    "open_plink",
    "prepare_scan",
    "read_kinship",
    "read_table",
    "run_scan",
]
