"""`edge-search index`: walk folders, embed what is new or changed, prune what vanished, publish.

Commits go to the catalog in small transactions, so a kill loses at most the batch in flight and
the next run resumes (unchanged files are recognised by size + mtime). The usearch file is
republished every `publish_every_s` seconds while indexing runs, so queries see progress.
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .catalog import encode_path
from .embedder import Embedder
from .store import IndexWriter

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)


@dataclass
class WalkResult:
    files: dict[str, os.stat_result] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)
    unreadable_dirs: list[str] = field(default_factory=list)


def _excluded(path: str, patterns: tuple[str, ...]) -> bool:
    name = os.path.basename(path)
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in patterns)


def walk(roots: Iterable[Path], excludes: tuple[str, ...] = ()) -> WalkResult:
    """Image files under `roots` (following symlinks, each real directory once) and what went wrong."""
    result = WalkResult()
    visited: set[tuple[int, int]] = set()

    def visit(directory: str) -> None:
        try:
            st = os.stat(directory)
        except OSError as exc:
            result.problems.append((directory, f"cannot open folder ({exc.strerror})"))
            result.unreadable_dirs.append(directory)
            return
        ident = (st.st_dev, st.st_ino)
        if ident in visited:
            result.problems.append((directory, "symlink loop or repeated folder, skipped"))
            return
        visited.add(ident)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            result.problems.append((directory, f"cannot read folder ({exc.strerror})"))
            result.unreadable_dirs.append(directory)
            return
        for entry in entries:
            path = entry.path
            if _excluded(path, excludes):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                visit(path)
                continue
            if os.path.splitext(entry.name)[1].lower() not in IMAGE_SUFFIXES:
                continue
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                reason = "broken symlink" if entry.is_symlink() else "vanished during the walk"
                result.problems.append((path, reason))
                continue
            except OSError as exc:
                result.problems.append((path, f"cannot stat ({exc.strerror})"))
                continue
            result.files[os.path.abspath(path)] = stat

    for root in roots:
        root_path = os.path.abspath(os.fspath(root))
        if os.path.isfile(root_path):
            if os.path.splitext(root_path)[1].lower() in IMAGE_SUFFIXES:
                result.files[root_path] = os.stat(root_path)
            else:
                result.problems.append((root_path, "not an image file name"))
        elif not os.path.exists(root_path):
            result.problems.append((root_path, "no such file or folder"))
            result.unreadable_dirs.append(root_path)
        else:
            visit(root_path)
    return result


@dataclass
class IndexSummary:
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    count: int = 0
    generation: int = 0
    seconds: float = 0.0
    embedded: int = 0

    @property
    def images_per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {
            "added": self.added, "updated": self.updated, "removed": self.removed, "unchanged": self.unchanged,
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "problems": [{"path": p, "reason": r} for p, r in self.problems],
            "count": self.count, "generation": self.generation, "seconds": round(self.seconds, 3),
            "images_per_s": round(self.images_per_s, 2),
        }


def _under(path: bytes, prefixes: list[bytes]) -> bool:
    return any(path == p or path.startswith(p.rstrip(b"/") + b"/") for p in prefixes)


def run_index(
    writer: IndexWriter,
    embedder: Embedder,
    roots: list[Path],
    *,
    excludes: tuple[str, ...] = (),
    prune: bool = True,
    commit_every: int = 32,
    publish_every_s: float = 30.0,
    on_total: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> IndexSummary:
    started = time.perf_counter()
    catalog = writer.catalog
    summary = IndexSummary()
    found = walk(roots, excludes)
    summary.problems = found.problems
    states = catalog.states()

    todo: list[tuple[str, os.stat_result]] = []
    seen: set[bytes] = set()
    existed: set[str] = set()
    for path, stat in found.files.items():
        key = encode_path(path)
        seen.add(key)
        state = states.get(key)
        if state and state.size == stat.st_size and state.mtime_ns == stat.st_mtime_ns:
            summary.unchanged += 1
            continue
        todo.append((path, stat))
        if state:
            existed.add(path)

    if prune:
        roots_b = [encode_path(r) for r in roots]
        keep_b = [encode_path(d) for d in found.unreadable_dirs]
        gone = [p for p in states if p not in seen and _under(p, roots_b) and not _under(p, keep_b)]
        summary.removed = catalog.delete_paths(gone) if gone else 0

    if on_total:
        on_total(len(todo))
    stats = dict(todo)
    batch: list = []
    last_publish = time.monotonic()
    vanished: list[bytes] = []
    for result in embedder.embed(path for path, _ in todo):
        stat = stats[str(result.path)]
        if result.vanished:
            summary.problems.append((str(result.path), "deleted during indexing"))
            vanished.append(encode_path(result.path))
            continue
        batch.append((encode_path(result.path), stat.st_size, stat.st_mtime_ns, result.sha256, result.vector, result.error))
        if result.ok:
            summary.embedded += 1
            if str(result.path) in existed:
                summary.updated += 1
            else:
                summary.added += 1
        else:
            summary.failed.append((str(result.path), result.error or "unknown error"))
        if len(batch) >= commit_every:
            catalog.upsert_results(batch)
            if on_progress:
                on_progress(len(batch))
            batch = []
            if time.monotonic() - last_publish > publish_every_s:
                writer.publish()
                last_publish = time.monotonic()
    if batch:
        catalog.upsert_results(batch)
        if on_progress:
            on_progress(len(batch))
    if vanished and prune:
        summary.removed += catalog.delete_paths(vanished)
    summary.generation = writer.publish()
    summary.count = catalog.count()
    summary.seconds = time.perf_counter() - started
    return summary
