"""A fleet-wide copy of several boxes' indexes in one Milvus collection (a server, or a Milvus Lite file).

Each box's SQLite catalog stays the truth; `sync` makes the collection's rows for one box equal to that
box's embedded files. It compares against what the collection holds (no local bookkeeping that could
drift), so it is incremental (only new and changed rows carry vectors), idempotent (a second sync
changes nothing) and resumable (a sync killed half-way is finished by the next one). Rows are keyed by
"box/catalog id". One collection per bundle identity: embeddings of other weights or other preprocessing
are not comparable, so such a collection is refused rather than mixed.

Privacy: a sync sends file paths, sizes, mtimes, content hashes and embeddings off the box. It happens
only when asked for (`edge-search sync --milvus URI`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edge_search.runtime.errors import ClusterError, IndexMismatch, UsageError
from edge_search.runtime.store.catalog import Catalog
from edge_search.runtime.store.meta import IndexMeta

IDENTITY_PROPERTY = "edge_search.bundle_identity"
MODEL_PROPERTY = "edge_search.model"
BOX_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
PATH_MAX = 4096
WRITE_BATCH = 512  # ids per delete call
READ_BATCH = 4096
SEARCH_BREADTH = 256  # HNSW ef at query time (Milvus would use k): recall measured by benchmarks/scale_out.py


@dataclass(frozen=True)
class SyncReport:
    collection: str
    box: str
    added: int
    updated: int
    deleted: int
    unchanged: int
    count: int  # this box's rows in the collection after the sync
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class FleetHit:
    rank: int
    score: float
    box: str
    path: str
    key: int  # the catalog id on that box
    size: int
    mtime_ns: int

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "score": round(self.score, 6)}


def default_box() -> str:
    """This machine's name, as the fleet knows it (override with --box)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip("-.") or "box"
    return name[:64]


def check_box(box: str) -> str:
    if not BOX_PATTERN.fullmatch(box):
        raise UsageError(
            f"A box name is 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit), not {box!r}."
        )
    return box


def collection_name(identity: str) -> str:
    """One collection per bundle identity (Milvus names allow letters, digits and underscores)."""
    return f"edge_search_{identity[:24]}"


def _milvus():
    try:
        import pymilvus
    except ImportError as exc:
        raise UsageError(
            "--milvus needs pymilvus: pip install 'edge-search[milvus]' (it includes Milvus Lite for *.db files)."
        ) from exc
    for name in ("pymilvus", "milvus_lite", "grpc"):  # they log failed calls with tracebacks; we raise one message
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return pymilvus


def _storable_path(path: str) -> str:
    """Milvus VARCHAR holds UTF-8: undecodable bytes of a file name are written as \\x escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")[:PATH_MAX]


class Fleet:
    """One Milvus collection holding the embeddings of every box that syncs to it."""

    def __init__(self, client: Any, name: str, identity: str, dim: int, uri: str = ""):
        self.uri = uri
        self.client = client
        self.name = name
        self.identity = identity
        self.dim = dim

    @classmethod
    def open(
        cls,
        uri: str,
        *,
        identity: str,
        dim: int,
        model: str = "",
        collection: str | None = None,
        token: str | None = None,
        create: bool = False,
        settings: IndexMeta | None = None,
    ) -> Fleet:
        """Connect and check the collection; with `create`, make it (HNSW, inner product) if it is new."""
        pymilvus = _milvus()
        name = collection or collection_name(identity)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,254}", name):
            raise UsageError(f"A Milvus collection name is letters, digits and underscores, not {name!r}.")
        try:
            client = pymilvus.MilvusClient(uri=uri, token=token or "")
            exists = client.has_collection(name)
        except Exception as exc:  # MilvusException, grpc errors, a bad *.db path
            if is_lite(uri):
                raise ClusterError(
                    f"Milvus Lite could not open {uri}: {_reason(exc)}. A Lite file serves one process "
                    "at a time (is another edge-search using it?); a fleet shared by several boxes "
                    "needs a Milvus server."
                ) from exc
            raise ClusterError(
                f"Cannot reach Milvus at {uri}: {_reason(exc)}. Start the server, or give a *.db file for Milvus Lite."
            ) from exc
        fleet = cls(client, name, identity, dim, uri)
        if exists:
            fleet._check()
            if not client.list_indexes(name):  # a sync killed between creating the collection and its index
                client.create_index(name, fleet._index_params(settings))
        elif create:
            fleet._create(model, settings)
        else:
            raise ClusterError(
                f"Milvus at {uri} has no collection {name}: run `edge-search sync --milvus {uri}` on a box first."
            )
        if "Loaded" not in str(
            client.get_load_state(name).get("state")
        ):  # released after a restart, or a new Lite process
            client.load_collection(name)
        return fleet

    def _check(self) -> None:
        described = self.client.describe_collection(self.name)
        recorded = (described.get("properties") or {}).get(IDENTITY_PROPERTY)
        if recorded != self.identity:
            raise IndexMismatch(
                f"The Milvus collection {self.name} holds embeddings of another bundle (identity "
                f"{str(recorded)[:12]}… instead of {self.identity[:12]}…): their scores would not be comparable. "
                "Sync to another --collection, or use the bundle that collection was built with.",
                expected=str(recorded),
                got=self.identity,
            )
        dims = [f.get("params", {}).get("dim") for f in described["fields"] if f["name"] == "embedding"]
        if dims and int(dims[0]) != self.dim:
            raise IndexMismatch(
                f"The Milvus collection {self.name} holds {dims[0]}-d vectors, not {self.dim}-d.",
                expected=str(dims[0]),
                got=str(self.dim),
            )

    def _create(self, model: str, settings: IndexMeta | None) -> None:
        pymilvus = _milvus()
        DataType = pymilvus.DataType
        schema = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=160)
        schema.add_field("box", DataType.VARCHAR, max_length=64)
        schema.add_field("file_id", DataType.INT64)
        schema.add_field("path", DataType.VARCHAR, max_length=PATH_MAX * 4)
        schema.add_field("size", DataType.INT64)
        schema.add_field("mtime_ns", DataType.INT64)
        schema.add_field("sha256", DataType.VARCHAR, max_length=64)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=self.dim)
        # Strong: a query right after a sync sees it (the server's default, Bounded, made fresh writes invisible)
        self.client.create_collection(
            self.name,
            schema=schema,
            index_params=self._index_params(settings),
            consistency_level="Strong",
            properties={IDENTITY_PROPERTY: self.identity, MODEL_PROPERTY: model[:200]},
        )

    def _index_params(self, settings: IndexMeta | None):
        """HNSW over inner products, with the box index's own connectivity and build breadth."""
        connectivity = settings.connectivity if settings and settings.connectivity else 16
        expansion_add = settings.expansion_add if settings and settings.expansion_add else 128
        index = self.client.prepare_index_params()
        index.add_index(
            field_name="embedding",
            index_type="HNSW",
            metric_type="IP",
            params={"M": connectivity, "efConstruction": expansion_add},
        )
        return index

    # -- sync ---------------------------------------------------------------------------------------
    def _remote(self, box: str) -> dict[int, tuple]:
        """file_id -> (path, size, mtime_ns, sha256) of this box's rows in the collection."""
        iterator = self.client.query_iterator(
            self.name,
            batch_size=READ_BATCH,
            filter=f'box == "{box}"',
            output_fields=["file_id", "path", "size", "mtime_ns", "sha256"],
        )
        found: dict[int, tuple] = {}
        try:
            while rows := iterator.next():
                for row in rows:
                    found[int(row["file_id"])] = (row["path"], int(row["size"]), int(row["mtime_ns"]), row["sha256"])
        finally:
            iterator.close()
        return found

    def sync(self, catalog: Catalog, box: str) -> SyncReport:
        """Make this box's rows equal to the catalog's embedded files."""
        started = time.perf_counter()
        check_box(box)
        remote = self._remote(box)
        local = {
            key: (_storable_path(path), size, mtime, sha or "") for key, path, size, mtime, sha in catalog.ok_files()
        }
        stale = [key for key, row in local.items() if remote.get(key) != row]
        added = sum(key not in remote for key in stale)
        gone = [key for key in remote if key not in local]
        for keys, vectors in catalog.vectors(stale):  # at most 500 rows a time
            rows = [
                {
                    "pk": f"{box}/{int(key)}",
                    "box": box,
                    "file_id": int(key),
                    "path": local[int(key)][0],
                    "size": local[int(key)][1],
                    "mtime_ns": local[int(key)][2],
                    "sha256": local[int(key)][3],
                    "embedding": vector.tolist(),
                }
                for key, vector in zip(keys, vectors)
            ]
            self.client.upsert(self.name, rows)
        for part in iter_chunks(gone, WRITE_BATCH):
            self.client.delete(self.name, ids=[f"{box}/{key}" for key in part])
        if stale or gone:
            # seal what was written: a server searches unsealed ("growing") rows through a coarse interim
            # index (measured: recall@10 0.70 at 10k before the flush), sealed ones through HNSW
            self.client.flush(self.name)
        return SyncReport(
            self.name,
            box,
            added=added,
            updated=len(stale) - added,
            deleted=len(gone),
            unchanged=len(local) - len(stale),
            count=len(local),
            seconds=time.perf_counter() - started,
        )

    # -- search -------------------------------------------------------------------------------------
    def search(
        self,
        vector: np.ndarray,
        k: int,
        *,
        box: str | None = None,
        min_score: float | None = None,
        expansion: int = SEARCH_BREADTH,
        consistency: str = "Strong",
    ) -> list[FleetHit]:
        """The k rows nearest `vector` (a unit embedding) across every box, or one `box`.

        Strong (the default) sees every finished sync; a server makes it wait for its next time tick
        (measured ~190 ms on Milvus 2.3 vs ~11 ms "Bounded", which may miss the last seconds' writes)."""
        results = self.client.search(
            self.name,
            [np.asarray(vector, dtype=np.float32).tolist()],
            limit=k,
            filter=f'box == "{check_box(box)}"' if box else "",
            output_fields=["box", "file_id", "path", "size", "mtime_ns"],
            search_params={"metric_type": "IP", "params": {"ef": max(k, expansion)}},
            consistency_level=consistency,
        )
        hits: list[FleetHit] = []
        for row in results[0]:
            entity = row["entity"]
            score = float(row["distance"])
            if min_score is not None and score < min_score:
                continue
            hits.append(
                FleetHit(
                    len(hits) + 1,
                    score,
                    entity["box"],
                    entity["path"],
                    int(entity["file_id"]),
                    int(entity["size"]),
                    int(entity["mtime_ns"]),
                )
            )
        return hits

    def close(self) -> None:
        """Disconnect; for Milvus Lite also stop its in-process server, which holds the file's lock."""
        with contextlib.suppress(Exception):
            self.client.close()
        if is_lite(self.uri):
            with contextlib.suppress(Exception):
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(self.uri)


def is_lite(uri: str) -> bool:
    """A local file (Milvus Lite) rather than a server address."""
    return "://" not in uri


@contextlib.contextmanager
def milvus_errors(uri: str, consequence: str) -> Iterator[None]:
    """Milvus's own exceptions (a server gone mid-sync, a timeout) as one ClusterError that says what was kept."""
    try:
        yield
    except (ClusterError, IndexMismatch, UsageError):
        raise
    except Exception as exc:
        pymilvus = _milvus()
        if isinstance(exc, (pymilvus.MilvusException, ConnectionError, TimeoutError)) or "grpc" in type(exc).__module__:
            raise ClusterError(f"Milvus at {uri} failed: {_reason(exc)}. {consequence}.") from exc
        raise


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def iter_chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
