"""What the HTTP handlers share: one `Library`, one warm `Model`, the worker threads and the thumbnail cache.

Library work runs on one worker thread (two cores are better spent on one query at a time than on two); the
duplicates report on a second, so searches go on while it is computed. Each thread gets its own catalog
connection from the library itself (`Library.reader` is per thread).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from edge_search.runtime.serve.config import HttpError, ServiceConfig
from edge_search.runtime.serve.thumbnails import ThumbnailCache

if TYPE_CHECKING:
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

    def start(self) -> None:
        if self.watcher is not None:
            self.watcher.start()

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`function(*args, **kwargs)` on the library's worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self.worker, lambda: function(*args, **kwargs))

    async def dupes(self, threshold: float | None, under: str | None) -> DupesReport:
        """The duplicates report, computed once per (generation, threshold, folder)."""

        def compute() -> DupesReport:
            generation = self.library.reader().meta.generation
            key = (generation, threshold, under)
            if self._dupes_cached is None or self._dupes_cached[0] != key:  # one report kept: the latest asked for
                self._dupes_cached = (key, self.library.dupes(threshold, under_dir=under))
            return self._dupes_cached[1]

        return await asyncio.get_running_loop().run_in_executor(self.dupes_worker, compute)

    def fleet(self) -> Any:
        """The Milvus collection, opened on the first fleet query and kept (in the worker thread)."""
        if self.config.milvus is None:
            raise HttpError(400, "This service was started without --milvus: there is no fleet to search.")
        if self._fleet is None:
            self._fleet = self.library.open_fleet(
                self.config.milvus, self.model, collection=self.config.milvus_collection, token=self.config.milvus_token
            )
        return self._fleet

    def path_of(self, key: int) -> str:
        """The indexed file with this id (run in the worker); a JSON 404 for an unknown id."""
        path = self.library.reader().catalog.paths_for([key]).get(key)
        if path is None:
            raise HttpError(404, f"No indexed image has id {key}.")
        return path

    def close(self) -> None:
        if self._fleet is not None:
            self.worker.submit(self._fleet.close).result()
        if self.watcher is not None:
            self.watcher.stop()  # an interrupted pass commits what it embedded
        self.dupes_worker.shutdown()
        self.worker.shutdown()
        self.library.close()
