"""Duplicates in an index, in groups that are safe to act on: deleting every file but the keeper of each group
leaves, for every deleted file, a kept file with the same picture.

The rule (`RULE`, also in the JSON report):
- Byte-identical files (same sha256) form an `exact` group of their own, whatever else they resemble.
- Among distinct contents (one file stands for each set of identical copies: that group's keeper), two files are
  the same picture when the model says so (cosine at or above the threshold) *and* their pixels say so (the
  model-independent check of `model.signature`: the 16x16 thumbnails with alpha agree, as they are or mirrored,
  and pictures with little content, such as flat colours, gradients or images blank over white, only when
  pixel-identical). An embedding alone cannot carry the claim: such pictures crowd together in any model.
- A `near` group is a keeper and the files that are the same picture *as that keeper*. Keepers are chosen best
  first (`_preference`: the original): the best picture not yet placed takes every not-yet-placed picture that is
  the same picture as it. So a chain A~B~C where A and C do not pass is never one group through B unless B is the
  keeper and both pass against B; nobody is listed because of a third file.

Candidates are found through the vector index: one batched k-nearest search per image, with k widened for the
images whose k-th neighbour still passes, so no pair above the threshold is cut off by k. The index holds
reduced-precision vectors (f16 by default), so candidates are searched a little below the threshold and each pair
is decided on the catalog's float32 embeddings: the groups do not depend on the dtype. The pixel check reads the
signatures stored at index time (files indexed before them get theirs decoded here, only for the pairs that need
them). Nothing is ever deleted.
"""

from __future__ import annotations

import os
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from edge_search.runtime.files import under
from edge_search.runtime.jobs.signatures import signatures_of
from edge_search.runtime.model.signature import PixelVerdict, Signature, compare
from edge_search.runtime.store import vector_index as vi
from edge_search.runtime.store.catalog import Catalog, encode_path

FIRST_K = 16
# Up to this many vectors every image is compared with every other (exact, float32 BLAS); above it the
# candidates come from HNSW, which finds near-duplicates (very close pairs) reliably but not provably all of them:
# the scan grows with the square of the library (1.5 s at 10k 384-d vectors on 2 cores, ~2.5 min at 100k).
EXACT_DUPES_MAX = 20_000
# how far an index dtype's cosine can stray from float32's (unit vectors, measured bounds with room)
SCORE_SLACK = {"f32": 1e-5, "f16": 3e-3, "i8": 3e-2}
EXIF_TAKEN = (36867, 306)  # DateTimeOriginal (Exif IFD), DateTime (IFD0)
EXIF_MAKE, EXIF_MODEL, EXIF_ORIENTATION = 0x010F, 0x0110, 0x0112
MAX_PAIRS_GROUP = 200  # larger groups do not list every pair
RULE = (
    "exact: files with the same sha256, whatever else they resemble. near: one file per distinct content; every "
    "member scores at or above the threshold to the group's keeper AND passes the pixel check against it (16x16 "
    "thumbnails with alpha within tolerance, as they are or mirrored, same shape within 2%; pictures with little "
    "content, such as flat colours, gradients or images blank over white, only when pixel-identical); members "
    "need not pass against each other. Crops and rotations are not the same picture. The keeper is the original: "
    "the most pixels, then the oldest (EXIF date taken, else modification time), then the one with camera EXIF, "
    "then a name without copy/(1)/edited, then the larger file, then the shorter path."
)
COPY_NAME = re.compile(r"(?i)(?<![a-z])(copy|kopie|copie|copia|edited|bearbeitet)(?![a-z])|\(\d+\)|~\d+$")


@dataclass(frozen=True)
class DupeFile:
    key: int
    path: str
    size: int
    modified: str
    sha256: str | None
    width: int | None = None
    height: int | None = None
    exif_tags: int = 0
    taken: str | None = None
    camera: bool = False  # EXIF names the camera (Make or Model): what a camera original has, many re-saves lose
    timestamp: float = 0.0  # when the picture was made: EXIF date taken, else the modification time

    @property
    def pixels(self) -> int:
        return (self.width or 0) * (self.height or 0)

    @property
    def copy_like_name(self) -> bool:
        """A name as copies get them: "copy", "(1)", "edited"..."""
        return bool(COPY_NAME.search(os.path.splitext(os.path.basename(self.path))[0]))

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.key,
            "path": self.path,
            "size": self.size,
            "modified": self.modified,
            "width": self.width,
            "height": self.height,
            "exif_tags": self.exif_tags,
            "taken": self.taken,
            "camera": self.camera,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class DupeGroup:
    kind: str  # "exact": every file has the same bytes; "near": similar embeddings
    files: list[DupeFile]  # the keeper first, then by similarity to it
    keep: str
    scores_to_keep: list[float]  # per file, its cosine similarity to the keeper (1.0 for the keeper)
    pairs: list[tuple[int, int, float]]  # (index in files, index in files, cosine)
    pixels_to_keep: list[PixelVerdict | None] = field(default_factory=list)  # near groups: per member, the check
    kept_because: str = ""  # the rule of `_preference` that chose the keeper over the others, in words

    def as_dict(self) -> dict[str, Any]:
        checks = self.pixels_to_keep or [None] * len(self.files)
        return {
            "kind": self.kind,
            "keep": self.keep,
            "kept_because": self.kept_because,
            "paths": [f.path for f in self.files],
            "files": [
                {**f.as_dict(), "score_to_keep": round(s, 6), "pixels_to_keep": c.as_dict() if c else None}
                for f, s, c in zip(self.files, self.scores_to_keep, checks)
            ],
            "pairs": [{"a": a, "b": b, "score": round(s, 6)} for a, b, s in self.pairs],
        }


@dataclass(frozen=True)
class DupesReport:
    groups: list[DupeGroup]
    threshold: float
    threshold_source: str  # "option" | "bundle" | "default"
    files: int  # images considered
    seconds: float
    random_weights: bool = False
    notes: list[str] = field(default_factory=list)
    pixels_refused: int = 0  # pairs above the threshold whose pixels show different pictures

    @property
    def redundant_files(self) -> int:
        return sum(len(g.files) - 1 for g in self.groups)

    def as_dict(self) -> dict[str, Any]:
        return {
            "groups": [g.as_dict() for g in self.groups],
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "files": self.files,
            "redundant_files": self.redundant_files,
            "seconds": round(self.seconds, 3),
            "random_weights": self.random_weights,
            "notes": self.notes,
            "pixels_refused": self.pixels_refused,
            "rule": RULE,
        }


def find_duplicates(
    catalog: Catalog,
    index: vi.Index,
    threshold: float,
    *,
    under_dir: str | None = None,
    taken_among: set[int] | None = None,
    threshold_source: str = "option",
    random_weights: bool = False,
    index_dtype: str = "f16",
) -> DupesReport:
    """Group the catalog's images (those under `under_dir` and with their id in `taken_among`, if given: a date
    range's photos) into duplicates, by `RULE`."""
    started = time.perf_counter()
    rows = catalog.ok_files()
    if under_dir:
        prefix = [encode_path(os.path.abspath(os.path.expanduser(under_dir)))]
        rows = [r for r in rows if under(encode_path(r[1]), prefix)]
    if taken_among is not None:
        rows = [r for r in rows if r[0] in taken_among]
    described: dict[int, DupeFile] = {}  # row -> what the keeper choice needs (opens the file: only as needed)

    def describe(row: int) -> DupeFile:
        if row not in described:
            described[row] = _describe(rows[row])
        return described[row]

    groups: list[DupeGroup] = []
    by_hash: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_hash[row[4] or f"unhashed:{i}"].append(i)
    distinct: list[int] = []  # one row per content: its copies' keeper
    for same in by_hash.values():
        best = max(same, key=lambda i: _preference(describe(i))) if len(same) > 1 else same[0]
        distinct.append(best)
        if len(same) > 1:
            groups.append(_group("exact", [describe(i) for i in _keeper_first(best, same)], None))

    keys = np.array([rows[i][0] for i in distinct], dtype=np.uint64)
    vectors = _vectors(catalog, keys)
    position = {int(k): p for p, k in enumerate(keys)}
    slack = SCORE_SLACK.get(index_dtype, max(SCORE_SLACK.values()))
    if len(keys) <= EXACT_DUPES_MAX:
        similar = _pairs_by_scan(vectors, threshold)
    else:
        similar = {  # decided in float32, not in the index's dtype
            (min(a, b), max(a, b))
            for a, b in _pairs_at_or_above(index, vectors, keys, position, threshold - slack)
            if float(vectors[a] @ vectors[b]) >= threshold
        }
    signatures, made_now = _signatures(catalog, [int(keys[p]) for pair in similar for p in pair], rows, distinct, keys)
    passing: dict[int, set[int]] = defaultdict(set)  # position -> positions that are the same picture
    verdicts: dict[tuple[int, int], PixelVerdict] = {}
    pixels_refused = 0
    for a, b in similar:
        verdict = compare(signatures.get(int(keys[a])), signatures.get(int(keys[b])))
        if verdict.same:
            verdicts[(a, b)] = verdicts[(b, a)] = verdict
            passing[a].add(b)
            passing[b].add(a)
        else:
            pixels_refused += 1
    placed: set[int] = set()
    for keeper in sorted(passing, key=lambda p: _preference(describe(distinct[p])), reverse=True):
        if keeper in placed:
            continue
        placed.add(keeper)
        members = sorted(passing[keeper] - placed, key=lambda p: (-float(vectors[keeper] @ vectors[p]), p))
        if members:
            placed.update(members)
            chosen = [keeper, *members]
            checks = [None, *(verdicts[(keeper, p)] for p in members)]
            groups.append(_group("near", [describe(distinct[p]) for p in chosen], vectors[chosen], checks))
    groups.sort(key=lambda g: (-len(g.files), g.keep))
    notes = []
    if pixels_refused:
        notes.append(
            f"{pixels_refused} pair(s) above the threshold were not grouped: their pixels show different pictures "
            "(or pictures with too little content to tell apart)."
        )
    if made_now:
        notes.append(
            f"{made_now} file(s) indexed before pixel signatures were decoded for this report; "
            "`edge-search index` stores them for next time."
        )
    if random_weights:
        notes.append(
            "The model has random weights: similarity means nothing, so near-duplicate groups mean nothing "
            "either (exact copies are still exact)."
        )
    return DupesReport(
        groups,
        threshold,
        threshold_source,
        len(rows),
        time.perf_counter() - started,
        random_weights,
        notes,
        pixels_refused,
    )


def _signatures(
    catalog: Catalog, wanted: list[int], rows: list, distinct: list[int], keys: np.ndarray
) -> tuple[dict[int, Signature | None], int]:
    """key -> parsed pixel signature for the `wanted` keys, and how many had to be decoded now (stored none)."""
    stored = catalog.signatures(set(wanted))
    path_of = {int(keys[p]): rows[distinct[p]][1] for p in range(len(distinct))}
    missing = [(key, path_of[key]) for key, data in stored.items() if data is None]
    made = dict(signatures_of(missing)) if missing else {}
    found = {key: Signature.parse(data) if data is not None else None for key, data in stored.items()}
    found.update({key: Signature.parse(data) if data is not None else None for key, data in made.items()})
    return found, len(missing)


def _vectors(catalog: Catalog, keys: np.ndarray) -> np.ndarray:
    """Unit float32 vectors in the order of `keys`."""
    if not len(keys):
        return np.empty((0, 0), dtype=np.float32)
    position = {int(k): i for i, k in enumerate(keys)}
    out: np.ndarray | None = None
    for chunk_keys, chunk in catalog.vectors({int(k) for k in keys}):
        if out is None:
            out = np.empty((len(keys), chunk.shape[1]), dtype=np.float32)
        out[[position[int(k)] for k in chunk_keys]] = chunk
    return out if out is not None else np.empty((0, 0), dtype=np.float32)


def _pairs_by_scan(vectors: np.ndarray, threshold: float, rows: int = 512) -> set[tuple[int, int]]:
    """Every (a, b), a < b, whose float32 cosine is at or above `threshold`: the catalog's vectors against each
    other in blocks of `rows` (BLAS: 10,000 384-d vectors in ~1 s on two cores, where usearch's exact f16 scan
    took 8.5 s)."""
    pairs: set[tuple[int, int]] = set()
    for start in range(0, len(vectors), rows):
        block = vectors[start : start + rows] @ vectors.T
        for a, b in zip(*np.nonzero(block >= threshold)):
            if start + a < b:
                pairs.add((int(start + a), int(b)))
    return pairs


def _pairs_at_or_above(
    index: vi.Index, vectors: np.ndarray, keys: np.ndarray, row_of: dict[int, int], threshold: float
) -> list[tuple[int, int]]:
    """(row, row) for neighbours at or above `threshold`, found by k-nearest searches in `index`;
    rows whose k-th neighbour still passes are searched again with a larger k."""
    pairs: list[tuple[int, int]] = []
    pending = np.arange(len(keys))
    k = FIRST_K
    total = len(index)
    while len(pending) and total:
        k = min(k, total)
        found_keys, scores = vi.search_many(index, vectors[pending], k, exact_max=EXACT_DUPES_MAX)
        again = []
        for row, hit_keys, hit_scores in zip(pending, found_keys, scores):
            passing = hit_scores >= threshold
            for key in hit_keys[passing]:
                other = row_of.get(int(key))
                if other is not None and other != row:
                    pairs.append((int(row), other))
            if passing.all() and k < total:
                again.append(row)
        pending = np.array(again, dtype=np.int64)
        k *= 4
    return pairs


def _preference(file: DupeFile) -> tuple:
    """Which of several copies to keep, larger first: the original. The most pixels; then the oldest (a re-encode
    is newer); then the one whose EXIF names a camera; then a name that is not a copy's; only then the larger file
    (a re-encode at a higher quality is larger, so size never decides before these); then the shorter path (the
    copy least likely to be a "copy of copy" in a nested folder)."""
    return (file.pixels, -file.timestamp, file.camera, not file.copy_like_name, file.size, -len(file.path))


def why_kept(files: list[DupeFile]) -> str:
    """Which rule of `_preference` chose `files[0]` over the best of the others: the first one where they differ,
    with the keeper's value ('the most pixels (4000x3000)', 'the oldest (2018-06-01 10:00:00)')."""
    keeper = files[0]
    if len(files) < 2:
        return "the only file"
    best_other = max(_preference(f) for f in files[1:])
    reasons = (
        f"the most pixels ({keeper.width}x{keeper.height})",
        f"the oldest ({keeper.taken or keeper.modified})",
        "its EXIF names a camera",
        "its name is not a copy's",
        "the largest file",
        "the shortest path",
    )
    for reason, mine, theirs in zip(reasons, _preference(keeper), best_other):
        if mine != theirs:
            return reason
    return "the first listed (nothing else tells them apart)"


def _keeper_first(keeper: int, rows: list[int]) -> list[int]:
    return [keeper] + sorted((r for r in rows if r != keeper), key=lambda r: r)


def _group(
    kind: str, files: list[DupeFile], vectors: np.ndarray | None, checks: list[PixelVerdict | None] | None = None
) -> DupeGroup:
    """A group with its keeper first (`files[0]`); `vectors` None: exact copies (every score 1)."""
    count = len(files)
    similarity = np.ones((count, count)) if vectors is None else vectors @ vectors.T
    pairs = []
    if count <= MAX_PAIRS_GROUP:
        pairs = [(a, b, float(similarity[a, b])) for a in range(count) for b in range(a + 1, count)]
    scores = [float(s) for s in similarity[0]]
    return DupeGroup(kind, files, files[0].path, scores, pairs, checks or [], why_kept(files))


def _describe(row: tuple) -> DupeFile:
    key, path, size, mtime_ns, sha = row
    width = height = None
    tags, taken, camera = 0, None, False
    try:
        with Image.open(path) as image:
            width, height = image.size
            exif = _exif_without_decoding(image)
            tags = len(exif) + len(exif.get_ifd(0x8769))
            taken = exif.get_ifd(0x8769).get(EXIF_TAKEN[0]) or exif.get(EXIF_TAKEN[1])
            camera = bool(exif.get(EXIF_MAKE) or exif.get(EXIF_MODEL))
            if exif.get(EXIF_ORIENTATION) in (5, 6, 7, 8):  # shown turned a quarter: the upright size
                width, height = height, width
    except (OSError, ValueError, SyntaxError):
        pass  # gone or unreadable since it was indexed: listed without dimensions
    modified = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mtime_ns / 1e9))
    date = _exif_date(taken)
    when = _timestamp(date) if date else None
    return DupeFile(
        key, path, size, modified, sha, width, height, tags, date, camera, when if when is not None else mtime_ns / 1e9
    )


def _exif_without_decoding(image: Image.Image) -> Image.Exif:
    """The EXIF of an opened image, its pixels left undecoded: Pillow's PNG `getexif` decodes the whole picture to
    look for an eXIf chunk after the pixels (seconds for a 5120x2880 wallpaper); one before them is enough here."""
    if image.format != "PNG":
        return image.getexif()
    exif = Image.Exif()
    raw = image.info.get("exif")
    if raw:
        exif.load(raw)
    return exif


def _timestamp(date: str) -> float | None:
    """Seconds since the epoch for "2024-05-01 10:00:00" (local time, as cameras write it), or None."""
    try:
        return time.mktime(time.strptime(date[:19], "%Y-%m-%d %H:%M:%S"))
    except (ValueError, OverflowError):
        return None


def _exif_date(value: object) -> str | None:
    """EXIF's "2024:05:01 10:00:00" in the form the modification dates take, "2024-05-01 10:00:00"."""
    if not value:
        return None
    text = str(value).strip("\x00 ")
    return text[:10].replace(":", "-") + text[10:] if len(text) >= 10 and text[4] == ":" else text
