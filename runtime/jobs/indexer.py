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
from typing import Protocol

import numpy as np

from edge_search.runtime.files import under
from edge_search.runtime.jobs.signatures import fill_in
from edge_search.runtime.jobs.walk import walk
from edge_search.runtime.model.embedder import EmbedResult
from edge_search.runtime.store.catalog import ResultRow, Root, encode_path
from edge_search.runtime.store.generations import IndexWriter

# A publish rewrites and hashes the whole usearch file (~1.3 s of hashing alone at 1M vectors): while
# indexing, wait at least this many times as long as the last publish took, so publishing stays ~10% of the work.
PUBLISH_SHARE = 10

# Called once per file as it is settled: (path, what happened), the latter one of
# "added" | "updated" | "moved" | "unchanged" | "failed" | "vanished".
FileCallback = Callable[[str, str], None]


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
    cluster: str | None = None  # where the embedding ran, when not in this process (Ray)

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
            "cluster": self.cluster,
        }


class BatchEmbedder(Protocol):
    """What the indexer embeds with: this process's `Embedder`, or a Ray cluster's (`scale.ray_embedder`)."""

    def embed(
        self, paths: Iterable[str], *, reuse: Container[str] = ..., stop: threading.Event | None = None
    ) -> Iterator[EmbedResult]: ...


def run_index(
    writer: IndexWriter,
    embedder: BatchEmbedder,
    roots_given: Sequence[Root | str | os.PathLike[str]],
    *,
    prune: bool = True,
    commit_every: int = 32,
    publish_every_s: float = 30.0,
    on_start: Callable[[int], None] | None = None,
    on_file: FileCallback | None = None,
    stop: threading.Event | None = None,
    decode_limits: str | None = None,
) -> IndexReport:
    """`decode_limits`: what decides whether a file can be decoded at all (the megapixel limit); when it differs
    from the last run's, files that failed are tried again although they did not change."""
    started = time.perf_counter()
    roots = [r if isinstance(r, Root) else Root(os.path.abspath(os.fspath(r))) for r in roots_given]
    catalog = writer.catalog
    report = IndexReport()
    found = walk(roots, stop)
    report.problems, report.missing_roots = found.problems, found.missing_roots
    states = catalog.states()
    limits_changed = decode_limits is not None and catalog.index_meta().decode_limits != decode_limits

    todo: list[tuple[str, os.stat_result]] = []
    for path, stat in found.files.items():
        state = states.get(encode_path(path))
        failed_under_other_limits = state is not None and state.status == "failed" and limits_changed
        unchanged = state is not None and state.size == stat.st_size and state.mtime_ns == stat.st_mtime_ns
        if unchanged and not failed_under_other_limits:
            report.unchanged += 1
            continue
        todo.append((path, stat))

    # content already embedded, by hash (taken before pruning: a moved file's old row is still there);
    # only loaded when there is something to look up, so an unchanged run of a large index stays cheap
    known = catalog.ok_ids_by_sha256() if todo else {}
    if on_start:
        on_start(len(todo))
    stats = dict(todo)
    rows: list[ResultRow] = []
    touched: list[tuple[bytes, int, int]] = []
    vanished: list[bytes] = []
    moved_from: set[str] = set()  # old paths of moved files
    last_publish = time.monotonic()
    publish_cost = 0.0  # seconds the last publish took: a large index is republished less often

    def commit() -> None:
        if rows:
            writer.commit_results(rows)
        if touched:
            writer.touch(touched)
        rows.clear()
        touched.clear()

    settled = 0
    retry: list[str] = []  # known content whose row was replaced during this run (files swapped names), or whose
    # first copy in this run failed
    results = embedder.embed((path for path, _ in todo), reuse=known, stop=stop)
    for result in itertools.chain(results, embedder.embed(retry, stop=stop)):  # `retry` is filled by then
        path = str(result.path)
        key = encode_path(path)
        outcome = _settle(result, states.get(key), stats[path], found.files, catalog, known, rows, touched, moved_from)
        if outcome == "retry":
            retry.append(path)
            continue
        settled += 1
        if outcome == "vanished":
            report.problems.append((path, "deleted during indexing"))
            vanished.append(key)
        elif outcome == "failed":
            report.failed.append((path, result.error or "unknown error"))
        else:
            setattr(report, outcome, getattr(report, outcome) + 1)
            report.embedded += result.ok
        if on_file:
            on_file(path, outcome)
        if len(rows) + len(touched) >= commit_every:
            commit()
            if time.monotonic() - last_publish > max(publish_every_s, PUBLISH_SHARE * publish_cost):
                started_publish = time.monotonic()
                writer.publish()
                last_publish = time.monotonic()
                publish_cost = last_publish - started_publish
    commit()
    report.interrupted = bool(stop is not None and stop.is_set() and (settled < len(todo) or not found.complete))
    report.pending = len(todo) - settled

    if prune and found.complete:  # an interrupted walk did not see every file: prune nothing
        seen = {encode_path(p) for p in found.files}
        roots_b = [encode_path(r.path) for r in roots]
        keep_b = [encode_path(d) for d in found.unreadable_dirs]
        gone = [p for p in states if p not in seen and under(p, roots_b) and not under(p, keep_b)]
        deleted = writer.delete_paths(gone + vanished) if gone or vanished else 0
        report.removed = deleted - len({encode_path(p) for p in moved_from} & set(gone))  # a move is no removal
    if not (stop is not None and stop.is_set()):
        unsigned = catalog.unsigned()  # an index from before pixel signatures: once, no re-embedding
        if unsigned:
            report.signed = fill_in(unsigned, writer.set_signatures, stop=stop)
    if decode_limits is not None and limits_changed and not report.interrupted:
        writer.record_decode_limits(decode_limits)
    report.generation = writer.publish_if_changed()
    report.count = catalog.count()
    report.seconds = time.perf_counter() - started
    return report


def _embedding_of_content(sha: str | None, rows: list[ResultRow], catalog) -> tuple[np.ndarray, bytes | None] | None:
    """(embedding, pixel signature) of this content: from the rows of this run not yet committed, else from the
    catalog."""
    for row in reversed(rows):
        if row[3] == sha and row[4] is not None:
            return row[4], row[6]
    return catalog.embedding_of_content(sha) if sha else None


def _settle(result: EmbedResult, state, stat, on_disk, catalog, known, rows, touched, moved_from: set[str]) -> str:
    """Queue the catalog change for one file; returns what happened to it (a move adds its old path to
    `moved_from`: that row goes, but it was moved, not removed)."""
    key = encode_path(result.path)
    if result.vanished:
        return "vanished"
    if result.known:
        if state is not None and state.sha256 == result.sha256 and state.status == "ok":
            touched.append((key, stat.st_size, stat.st_mtime_ns))  # touched, or copied back: same content
            return "unchanged"
        found = _embedding_of_content(result.sha256, rows, catalog)
        if found is None:  # its row was replaced earlier in this run, or its first copy failed: embed it after all
            return "retry"
        rows.append((key, stat.st_size, stat.st_mtime_ns, result.sha256, found[0], None, found[1]))
        source = known.get(result.sha256)
        source_path = catalog.paths_for([source]).get(source) if source is not None else None
        moved = (
            source_path is not None and os.path.abspath(source_path) not in on_disk and not os.path.exists(source_path)
        )
        if moved:
            assert source_path is not None
            moved_from.add(source_path)
            return "moved"
        return "updated" if state else "added"
    rows.append((key, stat.st_size, stat.st_mtime_ns, result.sha256, result.vector, result.error, result.signature))
    if not result.ok:
        return "failed"
    return "updated" if state else "added"
