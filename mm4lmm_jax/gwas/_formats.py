"""Genotype formats beyond PLINK 1: PLINK 2 ``.pgen`` (``pgenlib``), BGEN 1.2/1.3 (``cbgen``),
VCF/BCF (``cyvcf2``, GT or a dosage field) and BIMBAM mean genotypes (GEMMA's text format).

Each is a :class:`~._io.GenotypeSource`: blocks of markers are read on demand (memory bounded by
the block), the counted allele is ``a1`` (ALT for PLINK 2, BGEN and VCF as PLINK 2's ``--glm``
counts it; the first allele column for BIMBAM, as GEMMA).  Readers are imported when a file of
their format is opened, so the package runs without the ones it does not use."""

from __future__ import annotations

import gzip
import io
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ._io import MISSING_COUNT, GenotypeSource, need_file, open_plink

#: Threads decoding BGEN variants (at most; one per 64 variants of a block).
_READ_THREADS = min(4, os.cpu_count() or 1)

#: pgenlib's code for a missing hard call / dosage.
_PGEN_MISSING = -9


def _library(name: str, what: str):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise InputError(f"reading {what} needs the package {name!r}: pip install {name}") from err


def _snp_table(chrom, snp, pos, a1, a2) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "chr": np.asarray(chrom, dtype=object),
            "snp": np.asarray(snp, dtype=object),
            "pos": pd.array(np.asarray(pos, dtype=np.int64), dtype="Int64"),
            "a1": np.asarray(a1, dtype=object),
            "a2": np.asarray(a2, dtype=object),
        }
    )


def _as_index(markers, m: int) -> np.ndarray:
    return np.arange(m)[markers] if isinstance(markers, slice) else np.asarray(markers, dtype=np.int64)


# --------------------------------------------------------------------------- PLINK 2


class PgenSource(GenotypeSource):
    """PLINK 2 ``.pgen/.pvar/.psam``: ALT allele counts (int8) from hard calls, or ALT
    dosages (float64) when the file can hold dosages."""

    libraries = ("pgenlib",)

    def __init__(self, fid, iid, snps: pd.DataFrame, pgen: str, dosage: bool):
        self.fid, self.iid, self.snps, self.pgen, self.dosage = fid, iid, snps, pgen, dosage
        base = pgen[: -len(".pgen")]
        self.files = (pgen, base + ".pvar", base + ".psam")
        self._reader = None
        self._rows: bytes | None = None

    def _open(self, rows: np.ndarray):
        import pgenlib

        key = rows.tobytes()
        if self._reader is None:
            self._reader = pgenlib.PgenReader(self.pgen.encode(), raw_sample_ct=self.n)
        if key != self._rows:
            every = rows.size == self.n
            self._reader.change_sample_subset(None if every else np.asarray(rows, dtype=np.uint32))
            self._rows = key
        return self._reader

    def _read(self, rows, markers):
        reader = self._open(rows)
        b = len(range(self.m)[markers]) if isinstance(markers, slice) else len(markers)
        if self.dosage:
            out = np.empty((b, rows.size), dtype=np.float64)
            if isinstance(markers, slice):
                reader.read_dosages_range(markers.start, markers.stop, out)
            else:
                reader.read_dosages_list(np.asarray(markers, dtype=np.uint32), out)
            out[out == _PGEN_MISSING] = np.nan
            return out.T
        out = np.empty((b, rows.size), dtype=np.int8)
        if isinstance(markers, slice):
            reader.read_range(markers.start, markers.stop, out)
        else:
            reader.read_list(np.asarray(markers, dtype=np.uint32), out)
        out[out == _PGEN_MISSING] = MISSING_COUNT
        return out.T  # (n, b), Fortran-ordered as the .bed reader gives it

    def spec(self) -> dict:
        return {"module": __name__, "class": "PgenSource", "pgen": self.pgen, "n": self.n, "m": self.m,
                "dosage": self.dosage}  # fmt: skip

    @classmethod
    def reopen(cls, spec: dict) -> PgenSource:
        ids = np.zeros(spec["n"])
        return cls(ids, ids, pd.DataFrame(index=range(spec["m"])), spec["pgen"], spec["dosage"])


def _pgen_dosage(path: Path) -> bool:
    """Whether a .pgen may hold dosages (its header's storage mode; PLINK 2's format spec)."""
    with open(path, "rb") as fh:
        head = fh.read(12)
    if len(head) < 3 or head[:2] != b"\x6c\x1b":
        raise InputError(f"{path}: not a PLINK 2 .pgen file (bad magic bytes)")
    mode = head[2]
    if mode in (0x01, 0x02):
        return False
    if mode in (0x03, 0x04):
        return True
    if mode == 0x10 and len(head) == 12:
        return (head[11] & 15) >= 4  # 8-bit record types: dosage (or phase) tracks may be present
    raise InputError(f"{path}: unsupported .pgen storage mode {mode:#x}")


def open_pfile(prefix: str | os.PathLike) -> PgenSource:
    """A PLINK 2 file set ``PREFIX.pgen/.pvar/.psam`` (ALT counted: ``a1`` = ALT, ``a2`` = REF)."""
    prefix = str(prefix)
    for ext in (".pgen", ".pvar", ".psam"):
        if prefix.endswith(ext):
            prefix = prefix[: -len(ext)]
    pgen, pvar, psam = (need_file(prefix + ext, f"PLINK 2 {ext}") for ext in (".pgen", ".pvar", ".psam"))
    samples = _read_psam(psam)
    variants = _read_pvar(pvar)
    _library("pgenlib", f"{pgen}")
    import pgenlib

    with pgenlib.PgenReader(str(pgen).encode()) as reader:
        n, m = reader.get_raw_sample_ct(), reader.get_variant_ct()
    if n != len(samples) or m != len(variants):
        raise InputError(
            f"{pgen}: {n} samples x {m} variants, but {psam} lists {len(samples)} and {pvar} {len(variants)}"
        )
    fid = samples["FID"].to_numpy() if "FID" in samples else None
    return PgenSource(fid, samples["IID"].to_numpy(), variants, str(pgen), _pgen_dosage(pgen))


def _header_table(path: Path, what: str, plink1_columns: list[str]) -> pd.DataFrame:
    """A PLINK 2 text table whose header line starts with ``#`` after any ``##`` lines, or,
    without a header, PLINK 1's layout (``.fam`` / ``.bim`` columns ``plink1_columns``), both
    of which PLINK 2 accepts."""
    skip, header = 0, True
    with open(path) as fh:
        for line in fh:
            if not line.startswith("##"):
                header = line.startswith("#")
                break
            skip += 1
    try:
        if header:
            df = pd.read_csv(path, sep=r"\s+", skiprows=skip, dtype=str, keep_default_na=False)
        else:
            df = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, keep_default_na=False)
            df = df.iloc[:, : len(plink1_columns)].set_axis(plink1_columns[: df.shape[1]], axis=1)
    except Exception as err:
        raise InputError(f"cannot read {what} {path}: {err}") from err
    df.columns = [str(c).lstrip("#") for c in df.columns]
    return df


def _read_psam(path: Path) -> pd.DataFrame:
    df = _header_table(path, "PLINK 2 .psam", ["FID", "IID", "PAT", "MAT", "SEX", "PHENO1"])
    if "IID" not in df.columns:
        raise InputError(f"{path}: no IID column in the header (columns {list(df.columns)})")
    key = ["FID", "IID"] if "FID" in df.columns else ["IID"]
    dup = df.duplicated(key)
    if dup.any():
        raise InputError(f"{path}: individual {df.loc[dup, 'IID'].iloc[0]!r} appears twice")
    return df


def _read_pvar(path: Path) -> pd.DataFrame:
    df = _header_table(path, "PLINK 2 .pvar", ["CHROM", "ID", "CM", "POS", "ALT", "REF"])
    need = ["CHROM", "POS", "ID", "REF", "ALT"]
    if any(c not in df.columns for c in need):
        raise InputError(f"{path}: the header must name {need} (got {list(df.columns)})")
    multi = df["ALT"].str.contains(",")
    if multi.any():
        raise InputError(
            f"{path}: variant {df.loc[multi, 'ID'].iloc[0]!r} has several ALT alleles; split them first "
            "(plink2 --make-pgen multiallelics=-)"
        )
    pos = pd.to_numeric(df["POS"], errors="coerce")
    if pos.isna().any():
        raise InputError(f"{path}: position {df.loc[pos.isna(), 'POS'].iloc[0]!r} is not a number")
    return _snp_table(df["CHROM"], df["ID"], pos, df["ALT"], df["REF"])


# --------------------------------------------------------------------------- BGEN


class BgenSource(GenotypeSource):
    """A BGEN 1.2/1.3 file (any bit depth, phased or not): expected ALT allele counts
    (dosages, float64), read variant by variant at offsets from a metafile."""

    libraries = ("cbgen",)

    def __init__(self, fid, iid, snps, bgen: str, offsets: np.ndarray, counted: int, files=(), compression=None):
        self.fid, self.iid, self.snps, self.bgen = fid, iid, snps, bgen
        self.offsets, self.counted = offsets, counted
        self.compression = _bgen_compression(bgen) if compression is None else compression
        self.files = files or (bgen,)

    def _read(self, rows, markers):
        idx = _as_index(markers, self.m)
        out = np.empty((idx.size, self.n), dtype=np.float64)  # variant-major while filled
        threads = max(1, min(_READ_THREADS, idx.size // 64))
        parts = np.array_split(np.arange(idx.size), threads)
        if threads == 1:
            self._fill(out, idx, parts[0])
        else:  # cbgen's C calls release the GIL: variants decompress in parallel
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda part: self._fill(out, idx, part), parts))
        block = out if rows.size == self.n else out[:, rows]
        return block.T  # (n, b), Fortran-ordered

    def _fill(self, out: np.ndarray, idx: np.ndarray, part: np.ndarray) -> None:
        """Dosages of variants ``idx[part]`` into rows ``part`` of ``out``: the common layout
        (biallelic, diploid, unphased, 8 or 16 bits, zlib or none) decoded here, a block at a
        time with numpy, anything else by ``cbgen``."""
        import zlib

        import cbgen

        n = self.n
        simple: dict[int, list] = {8: [], 16: []}
        other = []
        with open(self.bgen, "rb") as fh:
            for j in part:
                fh.seek(int(self.offsets[idx[j]]))
                size = int.from_bytes(fh.read(4), "little")
                if self.compression == 1:
                    fh.seek(4, 1)  # the uncompressed length
                    raw = zlib.decompress(fh.read(size - 4))
                elif self.compression == 0:
                    raw = fh.read(size)
                else:
                    other.append(j)
                    continue
                bits = _simple_layout(raw, n)
                (simple[bits] if bits else other).append((j, raw) if bits else j)
        for bits, items in simple.items():
            if items:
                rows = np.array([j for j, _ in items])
                out[rows] = _simple_dosages([r for _, r in items], n, bits, self.counted)
        if other:
            with cbgen.bgen_file(self.bgen) as bgen:
                for j in other:
                    g = bgen.read_genotype(int(self.offsets[idx[j]]))
                    out[j] = _dosage(g, self.counted, str(self.snps["snp"].iloc[idx[j]]), self.bgen)
                    out[j, g.missing] = np.nan

    def spec(self) -> dict:
        return {"module": __name__, "class": "BgenSource", "bgen": self.bgen, "offsets": self.offsets,
                "counted": self.counted, "n": self.n}  # fmt: skip

    @classmethod
    def reopen(cls, spec: dict) -> BgenSource:
        ids = np.zeros(spec["n"])
        snps = pd.DataFrame({"snp": [""] * len(spec["offsets"])})
        return cls(ids, ids, snps, spec["bgen"], spec["offsets"], spec["counted"])


def _simple_layout(raw: bytes, n: int) -> int:
    """The bits per probability (8 or 16) when BGEN layout-2 probability data ``raw`` is of a
    biallelic variant with every sample diploid and unphased; else 0."""
    if len(raw) < 10 + n or int.from_bytes(raw[0:4], "little") != n or int.from_bytes(raw[4:6], "little") != 2:
        return 0
    if raw[6] != 2 or raw[7] != 2 or raw[8 + n] != 0 or raw[9 + n] not in (8, 16):
        return 0
    bits = raw[9 + n]
    return bits if len(raw) == 10 + n + 2 * n * bits // 8 else 0


def _simple_dosages(raws: list[bytes], n: int, bits: int, counted: int) -> np.ndarray:
    """(b, n) expected counts of allele ``counted`` from the probability data of ``b`` simple
    variants (:func:`_simple_layout`), NaN where the missing bit is set."""
    probs = b"".join(r[10 + n :] for r in raws)
    ploidy = np.frombuffer(b"".join(r[8 : 8 + n] for r in raws), dtype=np.uint8).reshape(len(raws), n)
    if bits == 8:  # one gather: the dosage of every (P(AA), P(AB)) byte pair, read as a uint16
        d = _dosage_table(counted)[np.frombuffer(probs, dtype="<u2").reshape(len(raws), n)]
    else:
        values = np.frombuffer(probs, dtype="<u2").reshape(len(raws), n, 2)
        p_aa, p_ab = values[..., 0] / 65535.0, values[..., 1] / 65535.0
        d = (2.0 - p_ab) - 2.0 * p_aa if counted == 1 else 2.0 * p_aa + p_ab
    d[ploidy >= 0x80] = np.nan  # the missing bit
    return d


@lru_cache(maxsize=2)
def _dosage_table(counted: int) -> np.ndarray:
    """(65536,) dosages of allele ``counted`` for 8-bit probability pairs: index
    ``P(AA) + 256 P(AB)`` (each /255), P(BB) = 1 - P(AA) - P(AB)."""
    code = np.arange(65536)
    p_aa, p_ab = (code & 255) / 255.0, (code >> 8) / 255.0
    return (2.0 - p_ab) - 2.0 * p_aa if counted == 1 else 2.0 * p_aa + p_ab


def _dosage(g, counted: int, name: str, path: str) -> np.ndarray:
    """Expected count of allele ``counted`` (0 or 1) per sample from a cbgen genotype."""
    p = g.probability
    if np.any(g.ploidy != 2):
        raise InputError(f"{path}: variant {name!r} has samples of ploidy other than 2 (not supported)")
    if p.shape[1] == 3 and not g.phased:  # P(AA), P(AB), P(BB)
        d = p[:, 1] + 2.0 * p[:, 2] if counted == 1 else p[:, 1] + 2.0 * p[:, 0]
    elif p.shape[1] == 4 and g.phased:  # haplotype 1 (A, B), haplotype 2 (A, B)
        d = p[:, 1] + p[:, 3] if counted == 1 else p[:, 0] + p[:, 2]
    else:
        raise InputError(f"{path}: variant {name!r}: unexpected probability layout {p.shape}")
    d = np.array(d, dtype=np.float64)
    d[g.missing] = np.nan
    return d


def _bgen_compression(path: str) -> int:
    """The header's compression flag: 0 none, 1 zlib, 2 zstd (BGEN 1.2 spec; -1 for layout 1,
    left to cbgen)."""
    with open(path, "rb") as fh:
        fh.seek(4)
        header = int.from_bytes(fh.read(4), "little")
        fh.seek(4 + header - 4)
        flags = int.from_bytes(fh.read(4), "little")
    return flags & 3 if (flags >> 2) & 15 == 2 else -1


def open_bgen(path: str | os.PathLike, sample: str | os.PathLike | None = None, *, ref: str) -> BgenSource:
    """A BGEN file (``ref="first"``: the first allele of each variant is REF, as in UK Biobank's
    files; ``"last"``: the last is, as in PLINK-exported files).  ALT dosages are counted
    (``a1`` = ALT).  Sample IDs from ``sample`` (an Oxford ``.sample``: ID_1 = FID, ID_2 = IID)
    or else from the file (IIDs).  A metafile of variant offsets is written on first use
    (:func:`_metafile`)."""
    if ref not in ("first", "last"):
        raise InputError(
            f"BGEN {path}: say which allele is REF: ref='first' (UK Biobank) or 'last' (PLINK exports), got {ref!r}"
        )
    p = need_file(path, "BGEN")
    _library("cbgen", f"BGEN {p}")
    import cbgen

    try:
        with cbgen.bgen_file(str(p)) as bgen:
            n, m = bgen.nsamples, bgen.nvariants
            embedded = bgen.read_samples().astype(str) if bgen.contain_samples else None
            meta = _metafile(bgen, p)
    except RuntimeError as err:
        raise InputError(f"cannot read BGEN file {p}: {err}") from err
    files: tuple[str, ...] = (str(p),)
    if sample is not None:
        ids = _read_oxford_sample(need_file(sample, "BGEN .sample"))
        files += (str(sample),)
        if len(ids) != n:
            raise InputError(f"{sample}: {len(ids)} samples, but BGEN {p} holds {n}")
        fid, iid = ids["ID_1"].to_numpy(), ids["ID_2"].to_numpy()
    elif embedded is not None:
        fid, iid = None, embedded
    else:
        raise InputError(f"BGEN {p} stores no sample IDs: give its .sample file")
    chrom, rsid, pos, alleles, offsets = [], [], [], [], []
    with cbgen.bgen_metafile(meta) as mf:
        for i in range(mf.npartitions):
            v = mf.read_partition(i).variants
            if np.any(v.nalleles != 2):
                k = int(np.flatnonzero(v.nalleles != 2)[0])
                raise InputError(f"BGEN {p}: variant {v.rsid[k].decode()!r} is not biallelic (split it first)")
            chrom.append(v.chromosome.astype(str))
            rsid.append(np.where(v.rsid != b"", v.rsid, v.id).astype(str))
            pos.append(v.position)
            alleles.append(v.allele_ids.astype(str))
            offsets.append(v.offset)
    pairs = np.char.split(np.concatenate(alleles), ",") if m else np.array([])
    first = [a[0] for a in pairs]
    last = [a[1] for a in pairs]
    counted = 1 if ref == "first" else 0
    a1, a2 = (last, first) if ref == "first" else (first, last)
    snps = _snp_table(np.concatenate(chrom), np.concatenate(rsid), np.concatenate(pos), a1, a2)
    return BgenSource(fid, iid, snps, str(p), np.concatenate(offsets).astype(np.int64), counted, files)


def _metafile(bgen, path: Path) -> str:
    """The path of a metafile (variant offsets) for ``path``: in the cache folder
    (:func:`mm4lmm_jax.enable_compilation_cache`'s directory, ``bgen/``) under a digest of the
    file's path, size and time, else beside the file; made now if absent."""
    import hashlib

    from .._cache import default_cache_dir

    cache = default_cache_dir()
    digest = hashlib.sha256(f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}".encode()).hexdigest()
    candidates = [Path(str(path) + ".metafile")]
    if cache is not None:
        candidates.insert(0, cache / "bgen" / f"{digest[:24]}.metafile")
    for meta in candidates:
        if meta.exists() and meta.stat().st_mtime_ns >= path.stat().st_mtime_ns:
            return str(meta)
    for meta in candidates:
        try:
            meta.parent.mkdir(parents=True, exist_ok=True)
            tmp = meta.with_name(meta.name + f".tmp-{os.getpid()}")
            bgen.create_metafile(str(tmp), verbose=False)
            os.replace(tmp, meta)
            return str(meta)
        except (OSError, RuntimeError):
            continue
    raise InputError(f"BGEN {path}: cannot write its metafile in {cache} nor beside it")


def _read_oxford_sample(path: Path) -> pd.DataFrame:
    """An Oxford ``.sample`` file: a header line, a line of column types, one line per sample."""
    try:
        df = pd.read_csv(path, sep=r"\s+", dtype=str, skiprows=[1], keep_default_na=False)
    except Exception as err:
        raise InputError(f"cannot read .sample file {path}: {err}") from err
    if list(df.columns[:2]) != ["ID_1", "ID_2"]:
        raise InputError(f"{path}: the first two columns must be ID_1 ID_2, got {list(df.columns[:2])}")
    return df


# --------------------------------------------------------------------------- streamed text formats


class _Sequential(GenotypeSource):
    """A format read front to back (VCF, BIMBAM): a block continues where the last ended;
    reading further back starts the file again, skipping records without decoding them."""

    def _records(self, start: int):
        """Records from index ``start`` on (an iterator of whatever :meth:`_decode` takes)."""
        raise NotImplementedError

    def _decode(self, records: list) -> np.ndarray:
        """(n, b) block of all individuals from ``b`` records."""
        raise NotImplementedError

    def _take(self, start: int, count: int) -> list:
        if getattr(self, "_cursor", None) is None or self._cursor[0] != start:
            self._close()
            self._cursor = (start, self._records(start))
        it = self._cursor[1]
        got = [next(it) for _ in range(count)]
        self._cursor = (start + count, it)
        return got

    def _close(self) -> None:
        cursor = getattr(self, "_cursor", None)
        if cursor is not None and hasattr(cursor[1], "close"):
            cursor[1].close()
        self._cursor = None

    def _read(self, rows, markers):
        every = rows.size == self.n
        if isinstance(markers, slice):
            start, stop, _ = markers.indices(self.m)
            block = self._decode(self._take(start, stop - start))
            return block if every else block[rows]
        idx = np.asarray(markers, dtype=np.int64)
        order = np.argsort(idx, kind="stable")
        wanted = idx[order]
        uniq = np.unique(wanted)
        self._close()
        taken, at = [], int(uniq[0]) if uniq.size else 0
        for k in uniq:
            if k != at:
                self._take(at, int(k) - at)  # skip
                at = int(k)
            taken.extend(self._take(at, 1))
            at += 1
        block = self._decode(taken) if taken else np.empty((self.n, 0))
        cols = np.searchsorted(uniq, idx)
        block = block[:, cols]
        return block if every else block[rows]


class VcfSource(_Sequential):
    """A VCF/BCF file read by ``cyvcf2``: ALT counts from GT (int8), or a dosage FORMAT field
    (``field="DS"``, float64)."""

    libraries = ("cyvcf2",)

    def __init__(self, fid, iid, snps, path: str, field: str):
        self.fid, self.iid, self.snps, self.path, self.field = fid, iid, snps, path, field
        self.files = (path,)
        self._cursor = None

    def _records(self, start: int):
        from cyvcf2 import VCF

        vcf = VCF(self.path, gts012=True, lazy=True, threads=1)

        def gen():
            try:
                for k, rec in enumerate(vcf):
                    if k >= start:
                        yield rec if self.field == "GT" else rec.format(self.field)
            finally:
                vcf.close()

        return gen()

    def _decode(self, records):
        if self.field == "GT":
            g = np.empty((self.n, len(records)), dtype=np.int8, order="F")
            for j, rec in enumerate(records):
                t = rec.gt_types
                g[:, j] = np.where(t == 3, MISSING_COUNT, t)
            return g
        d = np.empty((self.n, len(records)), dtype=np.float64, order="F")
        for j, values in enumerate(records):
            if values is None:
                d[:, j] = np.nan
                continue
            v = np.asarray(values, dtype=np.float64)[:, 0]
            v[(v < -1e30) | (v > 1e30)] = np.nan  # the VCF's missing-value sentinels
            d[:, j] = v
        return d


def open_vcf(path: str | os.PathLike, field: str = "GT", id_delim: str | None = None) -> VcfSource:
    """A VCF or BCF file (``.vcf``, ``.vcf.gz``, ``.bcf``): ALT allele counts from GT, or the
    dosage field ``field`` (e.g. ``"DS"``, one value per sample: the expected ALT count).  Sample
    names are IIDs (tables matched on IID), or ``FID<id_delim>IID`` split at the first
    ``id_delim`` (PLINK's ``--id-delim``).  One pass over the file at opening reads the variant
    table; multi-allelic records are an error (split them with ``bcftools norm -m-``)."""
    p = need_file(path, "VCF")
    _library("cyvcf2", f"VCF {p}")
    from cyvcf2 import VCF

    try:
        vcf = VCF(str(p), gts012=True, lazy=True)
    except (OSError, Exception) as err:
        raise InputError(f"cannot read VCF {p}: {err}") from err
    try:
        names = np.asarray(vcf.samples, dtype=object)
        if field != "GT":
            fmt = {h["ID"] for h in vcf.header_iter() if h.type == "FORMAT"}
            if field not in fmt:
                raise InputError(f"VCF {p}: no FORMAT field {field!r} in its header (fields: {sorted(fmt)})")
        chrom, ids, pos, ref, alt = [], [], [], [], []
        for rec in vcf:
            if len(rec.ALT) != 1:
                raise InputError(
                    f"VCF {p}: record {rec.CHROM}:{rec.POS} has {len(rec.ALT)} ALT alleles; split multi-allelic "
                    "records first (bcftools norm -m-)"
                )
            chrom.append(rec.CHROM)
            ids.append(rec.ID or f"{rec.CHROM}:{rec.POS}:{rec.REF}:{rec.ALT[0]}")
            pos.append(rec.POS)
            ref.append(rec.REF)
            alt.append(rec.ALT[0])
    finally:
        vcf.close()
    if not names.size:
        raise InputError(f"VCF {p}: no sample columns")
    if id_delim:
        parts = [s.split(id_delim, 1) for s in names]
        bad = [s for s, q in zip(names, parts) if len(q) != 2]
        if bad:
            raise InputError(f"VCF {p}: sample {bad[0]!r} holds no {id_delim!r} to split into FID and IID")
        fid, iid = np.asarray([q[0] for q in parts], dtype=object), np.asarray([q[1] for q in parts], dtype=object)
    else:
        fid, iid = None, names
    if len(set(zip(fid if fid is not None else iid, iid))) != len(iid):
        raise InputError(f"VCF {p}: a sample name appears twice")
    return VcfSource(fid, iid, _snp_table(chrom, ids, pos, alt, ref), str(p), field)


class BimbamSource(_Sequential):
    """A BIMBAM mean-genotype file (GEMMA's ``-g``): per line ``snp, a1, a2, value...`` separated
    by commas and/or spaces, values the expected count of ``a1`` (``NA`` missing); plain or gzip."""

    def __init__(self, fid, iid, snps, path: str, files=()):
        self.fid, self.iid, self.snps, self.path = fid, iid, snps, path
        self.files = files or (path,)
        self._cursor = None

    def _records(self, start: int):
        opener = gzip.open if _gzipped(self.path) else open

        def gen():
            with opener(self.path, "rt") as fh:
                k = 0
                for line in fh:
                    if not line.strip():
                        continue
                    if k >= start:
                        yield line
                    k += 1

        return gen()

    def _decode(self, records):
        text = "".join(records).replace(",", " ")
        try:
            df = pd.read_csv(io.StringIO(text), sep=r"\s+", header=None, na_values=["NA", "nan", "NaN"])
        except Exception as err:
            raise InputError(f"BIMBAM {self.path}: cannot parse a block: {err}") from err
        values = df.iloc[:, 3:]
        if values.shape[1] != self.n:
            raise InputError(f"BIMBAM {self.path}: a line holds {values.shape[1]} values, expected {self.n}")
        try:
            out = values.to_numpy(dtype=np.float64)
        except ValueError as err:
            raise InputError(f"BIMBAM {self.path}: a non-numeric genotype value ({err})") from err
        return np.asfortranarray(out.T)


def _gzipped(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def open_bimbam(path: str | os.PathLike, ids, annotation: str | os.PathLike | None = None) -> BimbamSource:
    """A BIMBAM mean-genotype file, individuals in the order of ``ids`` (as GEMMA: the order of
    the phenotype file): a table file whose first two columns are FID and IID (header
    ``FID IID ...``), a DataFrame with FID/IID columns, or a sequence of IIDs.  ``annotation``:
    GEMMA's SNP annotation (``snp pos chr`` per line, matched by SNP name); without it, chr
    ``0`` and no position."""
    p = need_file(path, "BIMBAM")
    opener = gzip.open if _gzipped(str(p)) else open
    names, a1, a2, n_values = [], [], [], None
    with opener(p, "rt") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            head = line.replace(",", " ").split()
            if n_values is None:
                n_values = len(head) - 3
            elif len(head) - 3 != n_values:
                raise InputError(f"BIMBAM {p}: line {number} holds {len(head) - 3} values, line 1 {n_values}")
            names.append(head[0])
            a1.append(head[1] if len(head) > 1 else "")
            a2.append(head[2] if len(head) > 2 else "")
    if not names:
        raise InputError(f"BIMBAM {p}: no marker lines")
    fid, iid, id_files = _bimbam_ids(ids, p)
    if len(iid) != n_values:
        raise InputError(
            f"BIMBAM {p}: {n_values} genotype values per line, but {len(iid)} individuals in {id_files or 'ids'} "
            "(GEMMA's convention: one value per individual of the phenotype file, in its order)"
        )
    chrom = np.full(len(names), "0", dtype=object)
    pos = np.zeros(len(names), dtype=np.int64)
    files = (str(p), *id_files)
    if annotation is not None:
        anno_path = need_file(annotation, "BIMBAM annotation")
        try:
            anno = pd.read_csv(anno_path, sep=r"[,\s]+", header=None, dtype=str, engine="python")
        except Exception as err:
            raise InputError(f"cannot read BIMBAM annotation {anno_path}: {err}") from err
        if anno.shape[1] < 3:
            raise InputError(f"BIMBAM annotation {anno_path}: expected 'snp pos chr' per line")
        table = anno.drop_duplicates(0).set_index(0)
        found = pd.Index(names).isin(table.index)
        if not found.all():
            missing = names[int(np.flatnonzero(~found)[0])]
            raise InputError(f"BIMBAM annotation {anno_path}: no line for marker {missing!r} of {p}")
        chrom = table.loc[names, 2].to_numpy(dtype=object)
        pos = pd.to_numeric(table.loc[names, 1], errors="coerce").fillna(0).to_numpy(np.int64)
        files += (str(anno_path),)
    snps = _snp_table(chrom, names, pos, a1, a2)
    return BimbamSource(fid, iid, snps, str(p), files)


def _bimbam_ids(ids, path) -> tuple[np.ndarray | None, np.ndarray, tuple[str, ...]]:
    if isinstance(ids, (str, os.PathLike)):
        from ._io import read_table

        table = read_table(ids, "phenotype")
        return (
            table.index.get_level_values(0).to_numpy(dtype=object),
            table.index.get_level_values(1).to_numpy(dtype=object),
            (str(ids),),
        )
    if isinstance(ids, pd.DataFrame) and {"FID", "IID"} <= set(ids.columns):
        return ids["FID"].astype(str).to_numpy(dtype=object), ids["IID"].astype(str).to_numpy(dtype=object), ()
    if ids is None:
        raise InputError(f"BIMBAM {path} carries no individual IDs: give the phenotype file (ids=) in its order")
    return None, np.asarray([str(i) for i in ids], dtype=object), ()


def open_genotypes(path: str | os.PathLike) -> GenotypeSource:
    """A genotype file set named by a path: a PLINK 1 prefix or ``.bed``, a PLINK 2 prefix or
    ``.pgen``, a ``.vcf``/``.vcf.gz``/``.bcf`` (GT).  BGEN and BIMBAM files need more than a
    path (which allele is REF; the individuals' IDs): open them with ``open_bgen`` /
    ``open_bimbam`` and pass the source."""
    text = str(path)
    lower = text.lower()
    if lower.endswith((".vcf", ".vcf.gz", ".vcf.bgz", ".bcf")):
        return open_vcf(text)
    if lower.endswith(".pgen") or (not lower.endswith(".bed") and os.path.isfile(text + ".pgen")):
        return open_pfile(text)
    if lower.endswith((".bgen", ".geno.txt", ".geno.txt.gz")):
        kind = "open_bgen(path, sample, ref='first'|'last')" if lower.endswith(".bgen") else "open_bimbam(path, ids)"
        raise InputError(f"{text}: open it with mm4lmm_jax.gwas.{kind} and pass the source as genotypes")
    return open_plink(text)


__all__ = [
    "BgenSource",
    "BimbamSource",
    "PgenSource",
    "VcfSource",
    "open_bgen",
    "open_bimbam",
    "open_genotypes",
    "open_pfile",
    "open_vcf",
]
