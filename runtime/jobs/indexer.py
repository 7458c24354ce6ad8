"""Bring the catalog in line with the files under the roots: embed what is new or changed, reuse the
embedding of content already seen (moved, renamed or touched files), prune what vanished, publish.

Commits go to the catalog in small transactions, so a kill loses at most the batch in flight and
the next run resumes (unchanged files are recognised by size + mtime). The usearch file is
republished every `publish_every_s` seconds while indexing runs (and no sooner than ten times the last
publish took, so a large index does not spend its time rewriting itself), so queries see progress. When
`stop` is set (Ctrl-C, SIGTERM), no new file is started; what was embedded is committed and published.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_search.runtime.files import FileStamp, under
from edge_search.runtime.jobs import dates
from edge_search.runtime.jobs.signatures import fill_in
from edge_search.runtime.jobs.videos import VideoEmbedder, hash_video
from edge_search.runtime.jobs.walk import walk
from edge_search.runtime.model.embedder import VANISHED, EmbedResult
from edge_search.runtime.model.video import is_video_name
from edge_search.runtime.options import DecodeLimits, StrEnum
from edge_search.runtime.store.catalog import ResultRow, Root, encode_path
from edge_search.runtime.store.generations import IndexWriter

# A publish rewrites and hashes the whole usearch file (~1.3 s of hashing alone at 1M vectors): while
# indexing, wait at least this many times as long as the last publish took, so publishing stays ~10% of the work.
PUBLISH_SHARE = 10


class Outcome(StrEnum):
    """What happened to one file in an index run (a str: callbacks and JSON see "added", ...)."""

    ADDED = "added"
    UPDATED = "updated"
    MOVED = "moved"  # its content was embedded under another path that is gone: the embedding is reused
    UNCHANGED = "unchanged"
    FAILED = "failed"
    VANISHED = "vanished"  # deleted between the walk and its turn
    RETRY = "retry"  # known content whose row went away during this run: embedded after all, at the end


# Called once per file as it is settled: (path, what happened).
FileCallback = Callable[[str, Outcome], None]


@dataclass
class IndexReport:
    """What one index run did. `embedded` counts model runs; moved and touched files need none."""

    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    unchanged: int = 0
    embedded: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    missing_roots: list[str] = field(default_factory=list)
    count: int = 0
    generation: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    pending: int = 0  # files left for the next run when interrupted
    signed: int = 0  # files indexed before pixel signatures existed that got theirs (decoded, not embedded)
    dated: int = 0  # files whose date taken was recorded (every new file; all of an index from before dates)
    undated: list[str] = field(default_factory=list)  # files found this run to have no plausible date (dates.py)
    known_failures: int = 0  # unchanged files that could not be read before either (not news: `info --failed`)
    frames: int = 0  # video frames embedded (model runs, beside `embedded` photos)
    videos_skipped: int = 0  # video files left out: PyAV (the `video` extra) is not installed
    cluster: str | None = None  # where the embedding ran, when not in this process (Ray)

    def count_outcome(self, outcome: Outcome, path: str, result: EmbedResult) -> None:
        """Add one settled file to the report."""
        match outcome:
            case Outcome.VANISHED:
                self.problems.append((path, "deleted during indexing"))
            case Outcome.FAILED:
                self.failed.append((path, result.error or "unknown error"))
            case Outcome.ADDED:
                self.added += 1
            case Outcome.UPDATED:
                self.updated += 1
            case Outcome.MOVED:
                self.moved += 1
            case Outcome.UNCHANGED:
                self.unchanged += 1
        self.embedded += result.ok

    @property
    def images_per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds else 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.moved or self.removed)

    def as_dict(self) -> dict:
        return {
            "added": self.added,
            "updated": self.updated,
            "moved": self.moved,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "embedded": self.embedded,
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "problems": [{"path": p, "reason": r} for p, r in self.problems],
            "missing_roots": self.missing_roots,
            "count": self.count,
            "generation": self.generation,
            "seconds": round(self.seconds, 3),
            "images_per_s": round(self.images_per_s, 2),
            "interrupted": self.interrupted,
            "pending": self.pending,
            "signed": self.signed,
            "dated": self.dated,
            "undated": self.undated,
            "known_failures": self.known_failures,
            "frames": self.frames,
            "videos_skipped": self.videos_skipped,
            "cluster": self.cluster,
        }


class BatchEmbedder(Protocol):
    """What the indexer embeds with: this process's `Embedder`, or a Ray cluster's (`scale.ray_embedder`)."""

    def embed(
        self, paths: Iterable[str], *, reuse: Container[str] = ..., stop: threading.Event | None = None
    ) -> Iterator[EmbedResult]: ...


@dataclass(frozen=True)
class RunOptions:
    """How an index run goes, not what it indexes: pruning, the commit and publish cadence, progress callbacks and
    the stop event (Ctrl-C, SIGTERM)."""

    prune: bool = True  # forget files that are gone (only after a complete walk)
    commit_every: int = 32
    publish_every_s: float = 30.0
    on_start: Callable[[int], None] | None = None  # called once with the number of files to settle
    on_file: FileCallback | None = None
    stop: threading.Event | None = None


def run_index(
    writer: IndexWriter,
    embedder: BatchEmbedder,
    roots_given: Sequence[Root | str | os.PathLike[str]],
    options: RunOptions = RunOptions(),
    decode_limits: DecodeLimits | None = None,
    videos: VideoEmbedder | None = None,
) -> IndexReport:
    """`decode_limits`: the limits this run decodes under; when they differ from the last run's, files that failed
    are tried again although they did not change. `videos`: what embeds the frames of videos (None: video files
    are left out and counted)."""
    started = time.perf_counter()
    stop = options.stop
    roots = [r if isinstance(r, Root) else Root(os.path.abspath(os.fspath(r))) for r in roots_given]
    catalog = writer.catalog
    report = IndexReport()
    found = walk(roots, stop, videos=videos is not None)
    report.problems, report.missing_roots = found.problems, found.missing_roots
    report.videos_skipped = found.videos_skipped
    states = catalog.states()
    before = DecodeLimits.from_recorded(catalog.index_meta().decode_limits)
    limits_raised = decode_limits is not None and decode_limits.may_decode_more_than(before)

    todo: list[tuple[str, os.stat_result]] = []
    unrecorded: list[tuple[bytes, str]] = []  # unchanged rows from before inodes were recorded
    for path, stat in found.files.items():
        state = states.get(encode_path(path))
        stamp = FileStamp.of(stat)
        unchanged = state is not None and stamp.matches(state.size, state.mtime_ns, state.inode)
        if unchanged and state is not None and state.inode is None:
            unrecorded.append((state.path, stamp.inode))
        if unchanged and state is not None and state.status == "failed":
            if limits_raised and DecodeLimits.refused_for_size(state.error):
                todo.append((path, stat))  # too large before: the higher limit may decode it now
                continue
            report.known_failures += 1  # not news: listed by `info --failed`
        if unchanged:
            report.unchanged += 1
            continue
        todo.append((path, stat))

    if unrecorded:
        writer.record_inodes(unrecorded)
    video_todo = [(path, stat) for path, stat in todo if is_video_name(path)]
    photo_todo = [(path, stat) for path, stat in todo if not is_video_name(path)]
    # content already embedded, by hash (taken before pruning: a moved file's old row is still there);
    # only loaded when there is something to look up, so an unchanged run of a large index stays cheap
    known = catalog.ok_ids_by_sha256() if photo_todo else {}
    if options.on_start:
        options.on_start(len(todo))
    settler = _Settler(catalog, states, dict(photo_todo), found.files, known)
    video_settler = _Settler(catalog, states, dict(video_todo), found.files, catalog.video_ids_by_sha256())
    rows, touched = settler.rows, settler.touched
    vanished: list[bytes] = []
    last_publish = time.monotonic()
    publish_cost = 0.0  # seconds the last publish took: a large index is republished less often

    def commit() -> None:
        if rows:
            writer.commit_results(rows)
        if touched:
            writer.touch(touched)
        rows.clear()
        touched.clear()

    def publish_when_due() -> None:
        nonlocal last_publish, publish_cost
        if time.monotonic() - last_publish > max(options.publish_every_s, PUBLISH_SHARE * publish_cost):
            started_publish = time.monotonic()
            writer.publish()
            last_publish = time.monotonic()
            publish_cost = last_publish - started_publish

    def settled_one(path: str, outcome: Outcome, result: EmbedResult) -> None:
        report.count_outcome(outcome, path, result)
        if outcome is Outcome.VANISHED:
            vanished.append(encode_path(path))
        if options.on_file:
            options.on_file(path, outcome)

    settled = 0
    retry: list[str] = []  # known content whose row was replaced during this run (files swapped names), or whose
    # first copy in this run failed
    results = embedder.embed((path for path, _ in photo_todo), reuse=known, stop=stop)
    for result in itertools.chain(results, embedder.embed(retry, stop=stop)):  # `retry` is filled by then
        path = str(result.path)
        outcome = settler.settle(result)
        if outcome is Outcome.RETRY:
            retry.append(path)
            continue
        settled += 1
        settled_one(path, outcome, result)
        if len(rows) + len(touched) >= options.commit_every:
            commit()
            publish_when_due()
    commit()
    for path, stat in video_todo if videos is not None else []:
        if stop is not None and stop.is_set():
            break
        settled_video = _settle_video(writer, videos, video_settler, path, stat, stop)  # type: ignore[arg-type]
        if settled_video is None:  # stopped half-way: left for the next run
            break
        outcome, result, frames = settled_video
        settled += 1
        report.frames += frames
        settled_one(path, outcome, result)
        publish_when_due()
    report.interrupted = bool(stop is not None and stop.is_set() and (settled < len(todo) or not found.complete))
    report.pending = len(todo) - settled

    if options.prune and found.complete:  # an interrupted walk did not see every file: prune nothing
        seen = {encode_path(p) for p in found.files}
        roots_b = [encode_path(r.path) for r in roots]
        keep_b = [encode_path(d) for d in found.unreadable_dirs]
        gone = [p for p in states if p not in seen and under(p, roots_b) and not under(p, keep_b)]
        deleted = writer.delete_paths(gone + vanished) if gone or vanished else 0
        moved_from = settler.moved_from | video_settler.moved_from
        report.removed = deleted - len({encode_path(p) for p in moved_from} & set(gone))  # a move is no removal
    if not (stop is not None and stop.is_set()):
        unsigned = catalog.unsigned()  # an index from before pixel signatures: once, no re-embedding
        if unsigned:
            report.signed = fill_in(unsigned, writer.set_signatures, stop=stop)
        undated = catalog.undated()  # added or touched this run, or indexed before dates existed: no re-embedding
        if undated:
            report.dated = dates.fill_in(undated, writer.set_taken, stop=stop, unknown=report.undated)
    if decode_limits is not None and limits_raised and not report.interrupted:
        writer.record_decode_limits(decode_limits.recorded())  # the highest limit files were tried under
    report.generation = writer.publish_if_changed()
    report.count = catalog.count()
    report.seconds = time.perf_counter() - started
    return report


def _settle_video(
    writer: IndexWriter,
    videos: VideoEmbedder,
    settler: _Settler,
    path: str,
    stat: os.stat_result,
    stop: threading.Event | None,
) -> tuple[Outcome, EmbedResult, int] | None:
    """Hash one video, reuse the frames of known content or embed its frames, and commit it (one transaction):
    (what happened, the result callbacks see, frames embedded), or None when `stop` interrupted it."""
    key, place = encode_path(path), Path(path)
    state = settler.states.get(key)
    sha, error = hash_video(path)
    if error == VANISHED:
        return Outcome.VANISHED, EmbedResult(place, error=error), 0
    if sha is None:
        writer.commit_video(key, FileStamp.of(stat), None, None, error)
        return Outcome.FAILED, EmbedResult(place, error=error), 0
    if state is not None and state.sha256 == sha and state.status == "ok":
        writer.touch([(key, FileStamp.of(stat))])  # touched, or copied back: same content
        return Outcome.UNCHANGED, EmbedResult(place, sha256=sha, known=True), 0
    reused = writer.catalog.frames_of_content(sha) if sha in settler.known else []
    if reused:
        writer.commit_video(key, FileStamp.of(stat), sha, reused, None)
        outcome = Outcome.MOVED if settler.moved_here(sha) else Outcome.UPDATED if state else Outcome.ADDED
        return outcome, EmbedResult(place, sha256=sha, known=True), 0
    embedded = videos.frames(path, sha, stop)
    if embedded.stopped:
        return None
    writer.commit_video(key, FileStamp.of(stat), sha, embedded.frames, embedded.error)
    settler.known[sha] = -1  # a copy later in this run reuses these frames (found by content)
    if embedded.frames is None:
        return Outcome.FAILED, EmbedResult(place, error=embedded.error, sha256=sha), 0
    return (Outcome.UPDATED if state else Outcome.ADDED), EmbedResult(place, sha256=sha), len(embedded.frames)


def _embedding_of_content(sha: str | None, rows: list[ResultRow], catalog) -> tuple[np.ndarray, bytes | None] | None:
    """(embedding, pixel signature) of this content: from the rows of this run not yet committed, else from the
    catalog."""
    for row in reversed(rows):
        if row.sha256 == sha and row.vector is not None:
            return row.vector, row.signature
    return catalog.embedding_of_content(sha) if sha else None


class _Settler:
    """Turns each embedding result into the catalog change it calls for (queued in `rows` and `touched`, committed
    by the caller) and says what happened to the file."""

    def __init__(self, catalog, states: dict, stats: dict[str, os.stat_result], on_disk: dict, known: dict):
        self.catalog, self.states, self.stats, self.on_disk, self.known = catalog, states, stats, on_disk, known
        self.rows: list[ResultRow] = []
        self.touched: list[tuple[bytes, FileStamp]] = []
        self.moved_from: set[str] = set()  # old paths of moved files: their rows go, but they were moved, not removed

    def settle(self, result: EmbedResult) -> Outcome:
        key = encode_path(result.path)
        state, stat = self.states.get(key), self.stats[str(result.path)]
        if result.vanished:
            return Outcome.VANISHED
        stamp = FileStamp.of(stat)
        if not result.known:
            self.rows.append(self._row(key, stamp, result.sha256, result.vector, result.error, result.signature))
            if not result.ok:
                return Outcome.FAILED
            return Outcome.UPDATED if state else Outcome.ADDED
        if state is not None and state.sha256 == result.sha256 and state.status == "ok":
            self.touched.append((key, stamp))  # touched, or copied back: same content
            return Outcome.UNCHANGED
        found = _embedding_of_content(result.sha256, self.rows, self.catalog)
        if found is None:  # its row was replaced earlier in this run, or its first copy failed: embed it after all
            return Outcome.RETRY
        self.rows.append(self._row(key, stamp, result.sha256, found[0], None, found[1]))
        if self.moved_here(result.sha256):
            return Outcome.MOVED
        return Outcome.UPDATED if state else Outcome.ADDED

    @staticmethod
    def _row(key: bytes, stamp: FileStamp, sha, vector, error, signature) -> ResultRow:
        return ResultRow(key, stamp.size, stamp.mtime_ns, sha, vector, error, signature, stamp.inode)

    def moved_here(self, sha: str | None) -> bool:
        """Whether the content's earlier file is gone from disk (a move, not a copy); remembers its old path."""
        source = self.known.get(sha)
        source_path = self.catalog.paths_for([source]).get(source) if source is not None else None
        if source_path is None or os.path.abspath(source_path) in self.on_disk or os.path.exists(source_path):
            return False
        self.moved_from.add(source_path)
        return True
