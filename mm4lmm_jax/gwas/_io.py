"""Reading GWAS inputs: genotypes (PLINK 1 .bed/.bim/.fam or an array), phenotype and
covariate tables, kinship files.  Errors name the file and say what is wrong."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError

SNP_COLUMNS = ["chr", "snp", "pos", "a1", "a2"]

#: A missing genotype in int8 allele counts (bed-reader's code).
MISSING_COUNT = -127


class GenotypeSource:
    """Markers to scan, read in blocks: the one interface of every genotype format.

    ``fid``/``iid`` (n,) individual IDs (``fid`` None when the format carries one ID per
    individual: tables are then matched on IID); ``snps`` a DataFrame with columns chr, snp,
    pos, a1, a2 (one row per marker; ``a1`` is the counted allele).  A format implements
    :meth:`_read` (the block as stored) and, when workers can open the file themselves,
    :meth:`spec`; everything else is shared.  ``files`` lists the files read (for a
    checkpoint's fingerprint); ``libraries`` the modules its reads import.
    """

    fid: np.ndarray | None
    iid: np.ndarray
    snps: pd.DataFrame
    files: tuple[str, ...] = ()
    libraries: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        return len(self.iid)

    @property
    def m(self) -> int:
        return len(self.snps)

    @property
    def description(self) -> str:
        """The source in words, for the log."""
        return ", ".join(self.files) or "an array"

    def _read(self, rows: np.ndarray, markers: slice | np.ndarray) -> np.ndarray:
        """The (len(rows), b) block of individuals ``rows`` (sorted indices) and ``markers`` (a
        slice, or indices in any order) as stored: int8 allele counts with
        :data:`MISSING_COUNT` where missing (hard calls), or floats with NaN (dosages)."""
        raise NotImplementedError

    def read(self, rows: np.ndarray, start: int, stop: int, dtype: str = "float64") -> np.ndarray:
        """Markers ``start:stop`` of individuals ``rows`` as floats of ``dtype``, NaN where missing."""
        return as_float(self._read(rows, slice(start, stop)), dtype)

    def read_counts(self, rows: np.ndarray, start: int, stop: int, dtype: str = "float64") -> np.ndarray:
        """The block as stored, for imputation: int8 counts with :data:`MISSING_COUNT` where
        missing (a quarter of the float32 bytes to decode and scan), or floats (``dtype`` is
        the precision the block will be rotated in: values of any scale are standardised
        before they are narrowed to it)."""
        return self._read(rows, slice(start, stop))

    def read_markers(self, rows: np.ndarray, markers: np.ndarray) -> np.ndarray:
        """Markers at the indices ``markers`` (any order) as :meth:`read_counts` gives them."""
        return self._read(rows, np.asarray(markers, dtype=np.int64))

    def spec(self) -> dict | None:
        """What a remote worker needs to open the same markers (:func:`reopen`), or None when
        blocks must be read here and sent."""
        return None


def as_float(block: np.ndarray, dtype: str = "float64") -> np.ndarray:
    """A block as :meth:`GenotypeSource._read` returns it, as floats with NaN where missing."""
    if block.dtype.kind in "iu":
        out = block.astype(dtype)
        out[block == MISSING_COUNT] = np.nan
        return out
    return np.asarray(block, dtype=dtype)


def reopen(spec: dict) -> GenotypeSource:
    """The source described by :meth:`GenotypeSource.spec` (in a worker process)."""
    import importlib

    module = importlib.import_module(spec["module"])
    return getattr(module, spec["class"]).reopen(spec)


class ArraySource(GenotypeSource):
    """An in-memory (n, m) matrix of allele counts or dosages, NaN where missing."""

    def __init__(self, fid, iid, snps: pd.DataFrame, array: np.ndarray):
        self.fid, self.iid, self.snps, self.array = fid, iid, snps, array

    def _read(self, rows, markers):
        if isinstance(markers, slice):
            return np.asarray(self.array[rows, markers], dtype=np.float64)
        return np.asarray(self.array[np.ix_(rows, markers)], dtype=np.float64)


class BedSource(GenotypeSource):
    """A PLINK 1 ``.bed`` (SNP-major), read by ``bed-reader``: int8 counts of A1."""

    libraries = ("bed_reader",)

    def __init__(self, fid, iid, snps: pd.DataFrame, bed_path: str):
        self.fid, self.iid, self.snps, self.bed_path = fid, iid, snps, bed_path
        base = bed_path[: -len(".bed")]
        self.files = (bed_path, base + ".bim", base + ".fam")

    def _read(self, rows, markers):
        from bed_reader import open_bed

        with open_bed(self.bed_path, iid_count=self.n, sid_count=self.m) as bed:
            return bed.read(index=np.s_[rows, markers], dtype="int8", order="F")

    def spec(self) -> dict:
        return {"module": __name__, "class": "BedSource", "bed_path": self.bed_path, "n": self.n, "m": self.m}

    @classmethod
    def reopen(cls, spec: dict) -> BedSource:
        ids = np.zeros(spec["n"])
        return cls(ids, ids, pd.DataFrame(index=range(spec["m"])), spec["bed_path"])


def need_file(path: str | os.PathLike, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} file not found: {p}")
    return p


def open_plink(prefix: str | os.PathLike) -> GenotypeSource:
    """A PLINK 1 binary file set ``PREFIX.bed/.bim/.fam`` (allele counts of A1, the bim's 5th column)."""
    prefix = str(prefix)
    for ext in (".bed", ".bim", ".fam"):
        if prefix.endswith(ext):
            prefix = prefix[: -len(ext)]
    bed, bim, fam = (need_file(prefix + ext, f"PLINK {ext}") for ext in (".bed", ".bim", ".fam"))
    for file, what in ((fam, "individual"), (bim, "marker")):
        if file.stat().st_size == 0:
            raise InputError(f"{file} is empty: it lists no {what}")
    try:
        fam_df = pd.read_csv(fam, sep=r"\s+", header=None, dtype=str)
        bim_df = pd.read_csv(bim, sep=r"\s+", header=None, dtype=str)
    except Exception as err:  # pandas raises several types
        raise InputError(f"cannot read {fam} / {bim}: {err}") from err
    if fam_df.shape[1] < 2:
        raise InputError(f"{fam}: expected at least 2 columns (FID IID ...), got {fam_df.shape[1]}")
    if bim_df.shape[1] != 6:
        raise InputError(f"{bim}: expected 6 columns (chr snp cM pos a1 a2), got {bim_df.shape[1]}")
    dup = fam_df.duplicated([0, 1])
    if dup.any():
        first = fam_df[dup].iloc[0]
        times = int(((fam_df[0] == first[0]) & (fam_df[1] == first[1])).sum())
        raise InputError(
            f"{fam}: individual FID={first[0]!r} IID={first[1]!r} appears {times} times "
            "(PLINK requires unique FID/IID pairs)"
        )
    pos = pd.to_numeric(bim_df[3], errors="coerce")
    if pos.isna().any():
        line = int(np.flatnonzero(pos.isna().to_numpy())[0])
        raise InputError(f"{bim}: line {line + 1}: position {bim_df[3].iloc[line]!r} is not a number (4th column)")
    n, m = len(fam_df), len(bim_df)
    expected = 3 + ((n + 3) // 4) * m
    with open(bed, "rb") as fh:
        magic = fh.read(3)
    if magic[:2] != b"\x6c\x1b" or magic[2:3] != b"\x01":
        raise InputError(f"{bed}: not a SNP-major PLINK 1 .bed file (bad magic bytes)")
    if bed.stat().st_size != expected:
        raise InputError(
            f"{bed}: {bed.stat().st_size} bytes, expected {expected} for {n} individuals (.fam) x {m} markers (.bim)"
        )
    snps = pd.DataFrame(
        {
            "chr": bim_df[0].to_numpy(),
            "snp": bim_df[1].to_numpy(),
            "pos": pos.astype("Int64").to_numpy(),
            "a1": bim_df[4].to_numpy(),
            "a2": bim_df[5].to_numpy(),
        }
    )
    return BedSource(fam_df[0].to_numpy(), fam_df[1].to_numpy(), snps, str(bed))


def array_source(genotypes, snp_names=None, sample_ids=None) -> GenotypeSource:
    """An in-memory (n, m) genotype matrix (allele counts, NaN for missing); a DataFrame's
    columns name the markers and its index the individuals."""
    if isinstance(genotypes, pd.DataFrame):
        snp_names = list(genotypes.columns) if snp_names is None else snp_names
        sample_ids = genotypes.index.to_numpy() if sample_ids is None else sample_ids
        genotypes = genotypes.to_numpy(dtype=float)
    arr = np.asarray(genotypes, dtype=float)
    if arr.ndim != 2:
        raise InputError(f"genotypes must be an (n, m) matrix, got shape {arr.shape}")
    n, m = arr.shape
    names = np.asarray(snp_names if snp_names is not None else [f"m{j + 1}" for j in range(m)], dtype=object)
    if names.size != m:
        raise InputError(f"{names.size} marker names for {m} markers")
    iid = np.asarray(sample_ids if sample_ids is not None else np.arange(1, n + 1).astype(str), dtype=object)
    snps = pd.DataFrame({"chr": ["0"] * m, "snp": names, "pos": np.arange(1, m + 1), "a1": "A1", "a2": "A2"})
    return ArraySource(None, iid, snps, arr)  # one ID per individual: tables are matched on IID


def read_table(
    path: str | os.PathLike, what: str, text: Sequence[str] = (), only: Sequence[str] | None = None
) -> pd.DataFrame:
    """A tab- or space-separated table with a header whose first two columns are FID and IID;
    ``NA``, ``-9`` and (tab-separated) empty cells are missing.  A header holding a tab makes
    the file tab-separated (an empty cell is a missing value, not a shift of the columns),
    else fields are separated by runs of spaces.  Returns a frame indexed by (FID, IID): the
    columns named in ``text`` as read (levels of a factor), the others as numbers; with ``only``,
    just those of its columns the file has (the others are neither checked nor kept)."""
    p = need_file(path, what)
    sep = _check_fields(p, what)
    try:
        df = pd.read_csv(p, sep=sep, dtype={0: str, 1: str}, na_values=["NA", "-9", "nan", "NaN", "."])
    except Exception as err:
        raise InputError(f"cannot read {what} file {p}: {err}") from err
    if df.shape[1] < 3:
        raise InputError(f"{what} file {p}: expected a header 'FID IID <columns>', got {list(df.columns)}")
    cols = [str(c).upper() for c in df.columns[:2]]
    if cols != ["FID", "IID"]:
        raise InputError(f"{what} file {p}: the first two columns must be FID and IID, got {list(df.columns[:2])}")
    df = df.rename(columns={df.columns[0]: "FID", df.columns[1]: "IID"})
    df["FID"] = df["FID"].astype(str)
    df["IID"] = df["IID"].astype(str)
    if df.duplicated(["FID", "IID"]).any():
        dup = df.loc[df.duplicated(["FID", "IID"]), "IID"].iloc[0]
        raise InputError(f"{what} file {p}: individual {dup!r} appears twice")
    df = df.set_index(["FID", "IID"])
    if only is not None:
        df = df[[c for c in df.columns if c in set(only)]]
    bad = [c for c in df.columns if c not in text and not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise InputError(f"{what} file {p}: column(s) {bad} are not numeric")
    return df.astype({c: float for c in df.columns if c not in text})


def _check_fields(path: Path, what: str) -> str:
    """Every line of a table has as many fields as its header: a header with a name too many,
    or a short or long row, is an error naming the line (pandas would read a short row as
    missing values, or shift the columns).  Returns the separator (``"\\t"`` when the header
    holds a tab, else runs of whitespace)."""
    import gzip

    from ._text_matrix import gzipped

    opener = gzip.open if gzipped(str(path)) else open
    with opener(path, "rt") as fh:
        first = fh.readline().rstrip("\r\n")
        tabs = "\t" in first

        def fields(line: str) -> list[str]:
            return line.rstrip("\r\n").split("\t") if tabs else line.split()

        header = fields(first)
        for number, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            got = fields(line)
            if len(got) != len(header):
                hint = " (the header has a name too many?)" if len(got) == len(header) - 1 and number == 2 else ""
                kind = "tab-separated " if tabs else ""
                raise InputError(
                    f"{what} file {path}: line {number} has {len(got)} {kind}fields, the header {len(header)}{hint}"
                )
    return "\t" if tabs else r"\s+"


class KinshipRead:
    """A kinship file being read, ``.result()`` an (n, n) float64 array in genotype order:

    - ``.npy``, or GEMMA's text format (n rows of n numbers separated by whitespace, no header,
      rows in genotype order; ``.gz`` compressed or not): no IDs, so the shape is checked
      and rows are taken in genotype order (GEMMA's convention).  Text is parsed by worker
      processes while the caller goes on (see :mod:`._text_matrix`; ``parts`` as there).
    - PLINK 2's ``PREFIX.rel.bin`` (float64, square; ``bin4``: float32 when the size says so)
      or ``PREFIX.rel`` (text, square), with ``PREFIX.rel.id`` (``#FID IID`` or ``#IID``
      header): rows matched to the genotyped individuals ``ids`` = (fid or None, iid) by ID;
      genotyped individuals absent from the file are flagged in :attr:`absent` (an error
      when one is analysed).

    :meth:`result` returns the checked array, or raises an :class:`InputError` naming the file."""

    def __init__(self, path: str | os.PathLike, n: int, parts: int | None = None, ids=None):
        from ._text_matrix import TextMatrixRead

        self.path = need_file(path, "kinship")
        self.n = n
        self.ids = ids
        self.absent = np.zeros(n, dtype=bool)
        self._value: np.ndarray | None = None
        name = self.path.name
        self._rel = name.endswith((".rel.bin", ".rel"))
        self._text = None
        if self._rel:
            return
        try:
            self._text = None if self.path.suffix == ".npy" else TextMatrixRead(self.path, parts)
        except (OSError, ValueError) as err:
            raise self._error(err) from err

    def _error(self, err: Exception) -> InputError:
        return InputError(f"cannot read kinship file {self.path}: {err}")

    def close(self) -> None:
        """Stop parsing (when :meth:`result` was not called) and remove the workers' files."""
        if self._text is not None:
            self._text.close()

    def result(self) -> np.ndarray:
        if self._value is None:
            if self._rel:
                self._value = checked_symmetric(self._read_rel(), f"kinship file {self.path}")
                return self._value
            try:
                k = np.load(self.path) if self._text is None else self._text.result()
            except Exception as err:
                raise self._error(err) from err
            if k.shape != (self.n, self.n):
                raise InputError(
                    f"kinship file {self.path}: shape {k.shape}, expected ({self.n}, {self.n}) for the {self.n} "
                    "individuals of the genotype file, rows in its order: check that the kinship and the genotype "
                    "file list the same individuals (a .fam with a line too many or too few?); PLINK 2's .rel.bin "
                    "with its .rel.id is matched by ID"
                )
            self._value = checked_symmetric(np.asarray(k, dtype=np.float64), f"kinship file {self.path}")
        return self._value

    def _read_rel(self) -> np.ndarray:
        """A PLINK 2 relationship matrix reordered to the genotyped individuals (absent: 0 rows,
        flagged in :attr:`absent`)."""
        text = str(self.path)
        id_path = need_file(text[: -len(".bin")] + ".id" if text.endswith(".bin") else text + ".id", "kinship .rel.id")
        ids = pd.read_csv(id_path, sep=r"\s+", dtype=str, keep_default_na=False)
        ids.columns = [str(c).lstrip("#") for c in ids.columns]
        if "IID" not in ids.columns:
            raise InputError(f"{id_path}: expected a header '#FID IID' or '#IID', got {list(ids.columns)}")
        k = len(ids)
        try:
            if text.endswith(".bin"):
                size = self.path.stat().st_size
                dtype = np.float64 if size == 8 * k * k else np.float32 if size == 4 * k * k else None
                if dtype is None:
                    raise InputError(
                        f"kinship file {self.path}: {size} bytes, not a square {k} x {k} matrix of float64 or float32 "
                        f"for the {k} IDs of {id_path} (triangular .rel.bin files are not read: use --make-rel "
                        "square bin)"
                    )
                mat = np.fromfile(self.path, dtype=dtype).reshape(k, k).astype(np.float64)
            else:
                mat = np.loadtxt(self.path, dtype=np.float64, ndmin=2)
        except ValueError as err:
            raise self._error(err) from err
        if mat.shape != (k, k):
            raise InputError(f"kinship file {self.path}: shape {mat.shape}, but {id_path} lists {k} individuals")
        fid, iid = (None, None) if self.ids is None else self.ids
        if iid is None:
            raise InputError(f"kinship file {self.path}: IDs given but no genotype IDs to match them to")
        iid = np.asarray(iid).astype(str)
        if fid is not None and "FID" in ids.columns:
            theirs = list(zip(ids["FID"], ids["IID"]))
            ours = list(zip(np.asarray(fid).astype(str), iid))
        else:
            theirs, ours = list(ids["IID"]), list(iid)
        position = {key: j for j, key in enumerate(theirs)}
        if len(position) != k:
            raise InputError(f"{id_path}: an individual is listed twice")
        where = np.array([position.get(key, -1) for key in ours])
        self.absent = where < 0
        if self.absent.all():
            raise InputError(f"kinship file {self.path}: no genotyped individual is among the IDs of {id_path}")
        out = np.zeros((self.n, self.n))
        have = np.flatnonzero(~self.absent)
        out[np.ix_(have, have)] = mat[np.ix_(where[have], where[have])]
        return out


def read_kinship(path: str | os.PathLike, n: int) -> np.ndarray:
    """An (n, n) kinship from a file (see :class:`KinshipRead`)."""
    return KinshipRead(path, n).result()


def checked_symmetric(k: np.ndarray, label: str, tile: int = 128) -> np.ndarray:
    """``k`` (n, n) if finite and symmetric (to 1e-8 of its largest entry), symmetrised when
    it is only nearly so; otherwise an :class:`InputError` naming ``label``.  The comparison
    runs over pairs of ``tile`` x ``tile`` tiles that stay in the cache (0.06 s at n = 5,000;
    no n x n temporaries)."""
    n = k.shape[0]
    scale = asym = 0.0
    for i in range(0, n, tile):
        for j in range(i, n, tile):
            upper, lower = k[i : i + tile, j : j + tile], k[j : j + tile, i : i + tile]
            largest = float(np.maximum(np.max(np.abs(upper)), np.max(np.abs(lower))))  # NaN stays NaN
            if not np.isfinite(largest):
                raise InputError(f"{label}: non-finite values")
            scale = max(scale, largest)
            asym = max(asym, float(np.max(np.abs(upper - lower.T))))
    if asym > 1e-8 * max(1.0, scale):
        raise InputError(f"{label}: the matrix is not symmetric")
    return k if asym == 0.0 else 0.5 * (k + k.T)


def write_atomic(path: str, write) -> None:
    """``write(tmp)`` to a temporary file in the folder of ``path``, then rename it to ``path``:
    a kill or a full disk never leaves a truncated ``path``."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_tsv(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``frame`` as tab-separated text with a header line: floats in their shortest
    decimal form that reads back to the same double (nothing rounded away), ``NA`` for a
    missing value, booleans as ``True``/``False`` (what ``pandas.read_csv`` and R's
    ``read.delim`` read back).  Formatted and written by Arrow's CSV writer, about ten times
    faster than ``DataFrame.to_csv``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = []
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_bool_dtype(col.dtype):
            text = pa.array(np.where(col.to_numpy(dtype=bool), "True", "False"))
        else:
            arr = pa.array(col, from_pandas=True)
            if pa.types.is_dictionary(arr.type):
                arr = arr.dictionary_decode()
            text = pc.fill_null(pc.cast(arr, pa.string()), "NA")
        columns.append(text)
    table = pa.table(columns, names=[str(c) for c in frame.columns])
    header = "\t".join(table.column_names) + "\n"
    try:  # no quotes (Arrow's "needed" would quote every string)...
        _write_text(table, header, path, "none")
    except pa.ArrowInvalid:  # ...unless a value holds a tab, a quote or a line break
        _write_text(table, header, path, "needed")


def _write_text(table, header: str, path, quoting: str) -> None:
    import pyarrow.csv as pa_csv

    with open(path, "wb") as sink:
        sink.write(header.encode())
        pa_csv.write_csv(table, sink, pa_csv.WriteOptions(include_header=False, delimiter="\t", quoting_style=quoting))


__all__ = [
    "ArraySource",
    "BedSource",
    "GenotypeSource",
    "InputError",
    "KinshipRead",
    "MISSING_COUNT",
    "SNP_COLUMNS",
    "array_source",
    "as_float",
    "checked_symmetric",
    "need_file",
    "open_plink",
    "read_kinship",
    "read_table",
    "reopen",
    "write_atomic",
    "write_tsv",
]
