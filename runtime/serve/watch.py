"""Keeps a served library current: the service is the single writer of its index while it runs.

File-system events (watchdog: inotify on Linux) and a periodic rescan both mark the library dirty;
after a short quiet spell the watcher runs one incremental index of every remembered root (the
walk skips unchanged files by size + mtime, so a pass costs a directory walk plus the new images).
Events only say "look again": the indexer decides what changed, so a lost or coalesced event costs
nothing but waiting for the next rescan. Where events cannot be had (watchdog missing, the inotify
watch limit reached, a network share), the rescan alone keeps the library current.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_search.runtime.errors import EdgeSearchError, IndexBusy
from edge_search.runtime.library import Library, Model, RunOptions

BUSY_RETRY_S = 15.0


@dataclass
class WatchStatus:
    """What the service reports about keeping the library current (`/api/health` → `watch`)."""

    mode: str = "starting"  # "events" | "polling" (rescans only) | "no folders"
    roots: list[str] = field(default_factory=list)
    indexing: bool = False
    passes: int = 0
    last_pass_at: str | None = None
    last_report: dict[str, Any] | None = None
    last_error: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "roots": self.roots,
            "indexing": self.indexing,
            "passes": self.passes,
            "last_pass_at": self.last_pass_at,
            "last_report": self.last_report,
            "last_error": self.last_error,
            "notes": self.notes,
        }


class LibraryWatcher:
    """One thread that indexes the library's remembered roots whenever they change."""

    def __init__(
        self,
        library: Library,
        model: Model,
        *,
        settle_s: float = 1.0,
        rescan_s: float = 300.0,
        publish_every_s: float = 5.0,
        log: Callable[[str], None] = lambda message: None,
    ):
        self.library = library  # the same Library: its reads are per thread, and this thread is the writer
        self.model = model
        self.settle_s = settle_s
        self.rescan_s = rescan_s
        self.publish_every_s = publish_every_s
        self.log = log
        self.status = WatchStatus()
        self._dirty = threading.Event()
        self._last_event = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="library-watcher", daemon=True)
        self._observer: Any = None  # a watchdog Observer, started with the first watched folder
        self._watched: set[str] = set()

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        self._dirty.set()  # catch up with what changed while the service was down
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Interrupt a pass (what it embedded so far is committed) and stop watching."""
        self._stop.set()
        self._dirty.set()
        self._thread.join(timeout)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5)

    def mark_dirty(self) -> None:
        self._last_event = time.monotonic()
        self._dirty.set()

    # -- the loop ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._dirty.wait(timeout=self.rescan_s):
                self._dirty.set()  # the periodic rescan: events are not trusted to be complete
            if self._stop.is_set():
                break
            self._settle()
            self._dirty.clear()
            if not self._pass():
                self._stop.wait(BUSY_RETRY_S)
                self._dirty.set()

    def _settle(self) -> None:
        """Wait until events pause for `settle_s` (a copy of 500 photos is one pass, not 500), at most 10×."""
        deadline = time.monotonic() + 10 * self.settle_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            quiet_for = time.monotonic() - self._last_event
            if quiet_for >= self.settle_s:
                return
            self._stop.wait(self.settle_s - quiet_for)

    def _pass(self) -> bool:
        """One incremental index of every remembered root; False when another writer holds the index."""
        roots = [r.path for r in self.library.roots()]
        self._watch(roots)
        if not roots:
            self.status.mode = "no folders"  # nothing remembered yet: `edge-search index DIR` adds one
            return True
        self.status.indexing = True
        try:
            report = self.library.index(
                self.model, None, run=RunOptions(publish_every_s=self.publish_every_s, stop=self._stop)
            )
        except IndexBusy as exc:
            self.status.last_error = str(exc)
            return False
        except EdgeSearchError as exc:
            self.status.last_error = str(exc)
            self.log(f"watch: {exc}")
            return True
        except Exception as exc:  # noqa: BLE001 - the service keeps answering queries; the reason is reported
            self.status.last_error = f"{type(exc).__name__}: {exc}"
            self.log(f"watch: indexing failed: {self.status.last_error}")
            return True
        finally:
            self.status.indexing = False
        self.status.passes += 1
        self.status.last_pass_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.status.last_report = report.as_dict()
        self.status.last_error = None
        if report.changed or report.failed:
            self.log(
                f"watch: +{report.added} new, {report.updated} changed, {report.moved} moved, "
                f"{report.removed} removed, {len(report.failed)} unreadable; {report.count} images"
            )
        return True

    # -- events -----------------------------------------------------------------------------------
    def _watch(self, roots: list[str]) -> None:
        """Watch every remembered root that exists and is not watched yet (roots added by a CLI run
        while the service runs are picked up at the next pass)."""
        self.status.roots = roots
        wanted = [r for r in roots if r not in self._watched and os.path.isdir(r)]
        if not wanted:
            return
        if self._observer is None and not self._start_observer():
            return
        for root in wanted:
            try:
                self._observer.schedule(_Handler(self, self.library.directory), root, recursive=True)
                self._watched.add(root)
            except OSError as exc:  # ENOSPC: the inotify watch limit (fs.inotify.max_user_watches)
                self.status.notes.append(
                    f"cannot watch {root} for changes ({exc.strerror or exc}); it is "
                    f"rescanned every {self.rescan_s:g} s instead. On Linux, raising "
                    "fs.inotify.max_user_watches lifts the limit."
                )
                self.log(f"watch: {self.status.notes[-1]}")
        self.status.mode = "events" if self._watched else "polling"

    def _start_observer(self) -> bool:
        try:
            from watchdog.observers import Observer
        except ImportError:
            self.status.mode = "polling"
            self.status.notes.append(
                f"watchdog is not installed: folders are rescanned every {self.rescan_s:g} s "
                "(install the serve extra for instant updates)."
            )
            return False
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.start()
        return True


class _Handler:
    """watchdog calls `dispatch` for every event; any change outside the index directory marks the library dirty."""

    def __init__(self, watcher: LibraryWatcher, index_dir: Path):
        self.watcher = watcher
        self.ignore = os.path.abspath(index_dir).rstrip("/") + "/"

    def dispatch(self, event) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return  # reads (our own thumbnails and decoding among them) change nothing
        paths = [event.src_path, getattr(event, "dest_path", "") or ""]
        if all(not p or os.fsdecode(p).startswith(self.ignore) for p in paths):
            return
        self.watcher.mark_dirty()
