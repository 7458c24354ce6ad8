"""What the HTTP handlers share: one `Library`, one warm `Model`, the worker threads and the thumbnail cache.

Library work runs on one worker thread (two cores are better spent on one query at a time than on two); the
duplicates report on a second, so searches go on while it is computed. Each thread gets its own catalog
connection from the library itself (`Library.reader` is per thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from edge_search.runtime.jobs.dates import DateRange
from edge_search.runtime.serve.config import HttpError, ServiceConfig
from edge_search.runtime.serve.photos import OpenPhoto, open_photo
from edge_search.runtime.serve.thumbnails import ThumbnailCache

if TYPE_CHECKING:
    from starlette.requests import Request

    from edge_search.runtime.jobs.dupes import DupesReport
    from edge_search.runtime.library import Library, Model
    from edge_search.runtime.serve.watch import LibraryWatcher

T = TypeVar("T")


class Service:
    def __init__(self, library: Library, model: Model, config: ServiceConfig, watcher: LibraryWatcher | None = None):
        """`watcher`: the library's writer while the service runs (watching on), or None (a read-only replica)."""
        library.close()  # readers are reopened by the threads that use them from now on
        self.library = library
        self.model = model
        self.config = config
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="library")
        self.dupes_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dupes")  # minutes on a big library
        self.thumbs = ThumbnailCache(library.directory / "thumbs")
        self._dupes_cached: tuple[tuple[Any, ...], DupesReport] | None = None
        self._fleet: Any = None
        self.watcher = watcher
        self._in_flight: dict[str, int] = {}  # searches in flight per client address (touched on the event loop only)
        self._pixels_in_flight: dict[str, int] = {}  # the pixels their photos declare
        self.abandoned = 0  # requests dropped unanswered: their client had gone before a worker reached them
        self._count_lock = threading.Lock()

    @contextlib.asynccontextmanager
    async def client_slot(self, client: str, pixels: int = 0) -> AsyncIterator[None]:
        """One of the few searches a client address may have in flight at once: the single worker is shared, so a
        client that sends many expensive uploads in parallel gets 429s instead of delaying everyone else. `pixels`:
        what the search's photos declare; one search, and one client's searches together, may declare at most
        `max_query_pixels` (413 for one search over it, 429 while the client's others hold the rest)."""
        budget = self.config.max_query_pixels
        if pixels > budget:
            raise HttpError(
                413, f"The photos declare {pixels / 1e6:.0f} megapixels; one search may decode {budget / 1e6:.0f}."
            )
        if self._in_flight.get(client, 0) >= self.config.queries_per_client:
            raise HttpError(
                429, f"This address already has {self.config.queries_per_client} searches running: wait for them."
            )
        if self._pixels_in_flight.get(client, 0) + pixels > budget:
            raise HttpError(429, "This address's searches in flight already decode as many pixels as allowed: wait.")
        self._in_flight[client] = self._in_flight.get(client, 0) + 1
        self._pixels_in_flight[client] = self._pixels_in_flight.get(client, 0) + pixels
        try:
            yield
        finally:
            self._in_flight[client] -= 1
            self._pixels_in_flight[client] -= pixels
            if not self._in_flight[client]:
                del self._in_flight[client], self._pixels_in_flight[client]

    def start(self) -> None:
        if self.watcher is not None:
            self.watcher.start()

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`function(*args, **kwargs)` on the library's worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self.worker, lambda: function(*args, **kwargs))

    async def call_for(
        self, request: Request, function: Callable[[], T], worker: ThreadPoolExecutor | None = None
    ) -> T:
        """`function()` on a worker thread for a client that is still there: a search or report queued behind
        others is dropped, not computed, when its client has gone by the time the worker reaches it (abandoned
        requests then cost nothing; counted in /api/health)."""
        gone = threading.Event()

        async def watch() -> None:
            while not gone.is_set():
                if await request.is_disconnected():
                    gone.set()
                    return
                await asyncio.sleep(0.1)

        def run() -> T:
            if gone.is_set():
                with self._count_lock:
                    self.abandoned += 1
                raise HttpError(499, "The client closed the connection; its request was not computed.")
            return function()

        watcher = asyncio.create_task(watch())
        try:
            return await asyncio.get_running_loop().run_in_executor(worker or self.worker, run)
        finally:
            watcher.cancel()

    async def dupes(
        self, request: Request, threshold: float | None, under: str | None, dates: DateRange | None = None
    ) -> DupesReport:
        """The duplicates report, computed once per (generation, threshold, folder, date range), if its client is
        still there when the dupes worker reaches it."""

        def compute() -> DupesReport:
            generation = self.library.reader().meta.generation
            key = (generation, threshold, under, dates)
            if self._dupes_cached is None or self._dupes_cached[0] != key:  # one report kept: the latest asked for
                self._dupes_cached = (key, self.library.dupes(threshold, under_dir=under, dates=dates))
            return self._dupes_cached[1]

        return await self.call_for(request, compute, self.dupes_worker)

    def fleet(self) -> Any:
        """The Milvus collection, opened on the first fleet query and kept (in the worker thread)."""
        if self.config.milvus is None:
            raise HttpError(400, "This service was started without --milvus: there is no fleet to search.")
        if self._fleet is None:
            self._fleet = self.library.open_fleet(
                self.config.milvus, self.model, collection=self.config.milvus_collection, token=self.config.milvus_token
            )
        return self._fleet

    def photo(self, key: int) -> OpenPhoto:
        """The indexed photo with this id, opened and checked (run in the worker); a JSON 404 for an unknown id,
        a file that failed indexing, or one that changed or left the indexed folders since."""
        catalog = self.library.reader().catalog
        return open_photo(catalog.served_file(key), catalog.roots(), key)

    def library_counts(self) -> tuple[int, int]:
        """(files indexed, videos among them), run in the worker."""
        catalog = self.library.reader().catalog
        return catalog.count(), catalog.count_videos()[0]

    def check_id(self, key: int) -> None:
        """A JSON 404 unless `key` is an indexed photo (run in the worker)."""
        if self.library.reader().catalog.served_file(key) is None:
            raise HttpError(404, f"No indexed image has id {key}.")

    def close(self) -> None:
        if self._fleet is not None:
            self.worker.submit(self._fleet.close).result()
        if self.watcher is not None:
            self.watcher.stop()  # an interrupted pass commits what it embedded
        self.dupes_worker.shutdown()
        self.worker.shutdown()
        self.library.close()
