"""Shared plumbing of the real-benchmark loaders: checked paths, JSON / JSON-lines / parquet
readers, image stores, and the errors every loader raises.

Every error message names the problem, the expected layout and where to get the data, so a
wrong path is fixed from the message alone.  Loaders validate everything they read before
returning (no partial output): a JSON object with a key twice (JSON would keep the last one
silently) and duplicate question ids are refused with the offending keys.  A missing or bad
individual image file is reported when it is loaded: one that does not decode, or decodes to
non-finite values (a float TIFF of NaN under a ``.jpg`` name) or to one constant value.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

PathLike = str | os.PathLike


class DataNotFoundError(FileNotFoundError):
    """A benchmark file or folder is missing."""


class DataFormatError(ValueError):
    """A benchmark file exists but does not have the expected format."""


class ImageNotFoundError(FileNotFoundError):
    """An image a question refers to is not in the image folder."""


@dataclass(frozen=True)
class Layout:
    """How one benchmark's files look (``expected``) and where to download them (``source``)."""

    benchmark: str
    expected: str
    source: str

    def missing(self, problem: str) -> DataNotFoundError:
        return DataNotFoundError(f"{self.benchmark}: {problem}. Expected {self.expected}. Get it from {self.source}.")

    def malformed(self, problem: str) -> DataFormatError:
        return DataFormatError(f"{self.benchmark}: {problem}. Expected {self.expected}. Get it from {self.source}.")


def require_dir(path: PathLike, what: str, layout: Layout) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise layout.missing(f"{what} not found at {path} (no such directory)")
    return path


def require_file(path: PathLike, what: str, layout: Layout) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise layout.missing(f"{what} not found at {path} (no such file)")
    return path


class _RepeatedKeys(ValueError):
    def __init__(self, keys: list[str]):
        super().__init__(keys)
        self.keys = keys


def _unique_object(pairs: list[tuple[str, object]]) -> dict:
    repeated = [key for key, n in Counter(key for key, _ in pairs).items() if n > 1]
    if repeated:
        raise _RepeatedKeys(repeated)
    return dict(pairs)


def read_json(path: Path, layout: Layout):
    """The content of a JSON file; a key that occurs twice in one object is refused (by name)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_unique_object)
    except _RepeatedKeys as error:
        raise layout.malformed(f"{path} has the key(s) {error.keys[:5]} more than once in one object "
                               f"({len(error.keys)} repeated; JSON would keep only the last silently); keep one "
                               f"entry per key") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise layout.malformed(f"{path} is not valid JSON ({error})") from None


def read_json_lines(path: Path, layout: Layout) -> list[dict]:
    """Objects of a JSON-lines file (blank lines skipped); errors name the line."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise layout.malformed(f"{path} line {number} is not a JSON object ({error})") from None
            if not isinstance(row, dict):
                raise layout.malformed(f"{path} line {number} is {type(row).__name__}, not a JSON object")
            rows.append(row)
    if not rows:
        raise layout.malformed(f"{path} holds no rows")
    return rows


def require_fields(row: Mapping, fields: Sequence[str], where: str, layout: Layout) -> None:
    missing = [f for f in fields if f not in row]
    if missing:
        raise layout.malformed(f"{where} lacks field(s) {missing} (has {sorted(row)})")


def parquet_files(path: PathLike, pattern: str, layout: Layout) -> list[Path]:
    """``path`` itself if it is a file, else the files under it matching ``pattern`` (recursive, sorted)."""
    path = Path(path).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise layout.missing(f"parquet data not found at {path}")
    files = sorted(path.rglob(pattern))
    if not files:
        raise layout.missing(f"no parquet file matching {pattern!r} under {path}")
    return files


def iter_parquet_rows(files: Sequence[Path], columns: Sequence[str], layout: Layout,
                      optional: Sequence[str] = (), required: Sequence[str] = ()) -> Iterator[tuple[Path, dict]]:
    """(file, row dict) of every row, reading ``columns`` (required) and ``optional`` columns batch by batch.

    ``required``: further columns that must exist but are not read (e.g. images, read in a later pass).
    """
    for file in files:
        try:
            handle = pq.ParquetFile(file)
        except Exception as error:  # pyarrow raises several types for a non-parquet file
            raise layout.malformed(f"{file} is not a readable parquet file ({error})") from None
        names = set(handle.schema_arrow.names)
        missing = [c for c in [*columns, *required] if c not in names]
        if missing:
            raise layout.malformed(f"{file} lacks column(s) {missing} (has {sorted(names)})")
        wanted = list(columns) + [c for c in optional if c in names]
        for batch in handle.iter_batches(columns=wanted, batch_size=256):
            for row in batch.to_pylist():
                yield file, row


def image_bytes(value, where: str, layout: Layout) -> bytes:
    """Encoded image bytes of a parquet image cell: Hugging Face's ``{"bytes", "path"}`` struct or raw bytes."""
    if isinstance(value, Mapping):
        value = value.get("bytes")
    if not isinstance(value, (bytes, bytearray)) or not value:
        raise layout.malformed(f"{where} has no image bytes (expected a struct {{bytes, path}} with the encoded image)")
    return bytes(value)


def decode_image(source, key: str, layout: Layout) -> Image.Image:
    """The image ``key`` (a file path or encoded bytes) as RGB; refused when it does not decode,
    holds non-finite values (a float image) or is one colour once converted (no picture to see)."""
    name = f"{key!r} ({source})" if isinstance(source, Path) else repr(key)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            mode = image.mode
            finite = bool(np.isfinite(np.asarray(image)).all()) if mode == "F" else True
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise layout.malformed(f"image {name} could not be decoded ({error})") from None
    if not finite:
        raise layout.malformed(f"image {name} decodes to non-finite pixel values (mode {mode!r} with NaN or "
                               f"infinity): it is not a photograph; replace the file with the benchmark's image")
    pixels = np.asarray(rgb).reshape(-1, 3)
    if len(pixels) and (pixels == pixels[0]).all():
        raise layout.malformed(f"image {name} decodes to one colour (every pixel RGB {pixels[0].tolist()}, from mode "
                               f"{mode!r}): it is blank or not the benchmark's image; replace the file")
    return rgb


@dataclass(frozen=True)
class FolderImages:
    """Image store over a folder: ``load(key)`` opens ``root / key`` as RGB."""

    root: Path
    layout: Layout

    def __call__(self, key: str) -> Image.Image:
        path = self.root / key
        if not path.is_file():
            raise ImageNotFoundError(
                f"{self.layout.benchmark}: image {key!r} not found in {self.root} (looked for {path}). "
                f"Expected {self.layout.expected}. Get it from {self.layout.source}.")
        return decode_image(path, key, self.layout)


@dataclass(frozen=True)
class BytesImages:
    """Image store over encoded bytes held in memory (parquet datasets)."""

    images: Mapping[str, bytes]
    layout: Layout

    def __call__(self, key: str) -> Image.Image:
        try:
            data = self.images[key]
        except KeyError:
            raise ImageNotFoundError(f"{self.layout.benchmark}: no image with key {key!r} in this dataset") from None
        return decode_image(data, key, self.layout)


def check_limit(limit: int | None) -> int | None:
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    return limit


def repeated(items: Sequence) -> list:
    """The items that occur more than once, in order of first occurrence."""
    return [item for item, n in Counter(items).items() if n > 1]


def check_unique(qids: Sequence[str], layout: Layout) -> None:
    twice = repeated(qids)
    if twice:
        raise layout.malformed(f"question id(s) {twice[:5]} occur twice or more ({len(twice)} repeated); the store "
                               f"keys rows by question id: keep one row per id")
