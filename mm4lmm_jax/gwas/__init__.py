"""Genome-wide association scans: exact per-marker ReML fits of kinship + error models."""

from ..errors import InputError
from .io import open_plink, read_kinship, read_table
from .scan import RESULT_COLUMNS, genomic_inflation, gwas

__all__ = ["RESULT_COLUMNS", "InputError", "genomic_inflation", "gwas", "open_plink", "read_kinship", "read_table"]
