"""edge-search as a library: a `Model` (bundle + session + preprocessing, opened once) and a `Library`
(one index directory). The CLI, the HTTP service and later commands are clients of these two; they
return result objects and never print or exit.

    from edge_search.runtime.library import Library

    library = Library("~/photos-index")               # nothing is opened yet
    model = library.open_model(options=ModelOptions(device="cpu"))  # the bundle the index recorded, else the default
    library.index(model, ["~/Pictures"])             # the single writer, for the length of the call
    for hit in library.query(model, images=["holiday.jpg"], k=5).hits:
        print(hit.rank, hit.score, hit.path)
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_search.runtime.errors import (
    BundleError,
    EdgeSearchError,
    ImageDecodeError,
    IndexMissing,
    UsageError,
)
from edge_search.runtime.files import under
from edge_search.runtime.jobs import known_photos
from edge_search.runtime.jobs.combined_query import Term, combine
from edge_search.runtime.jobs.dates import DateRange
from edge_search.runtime.jobs.dates import describe as describe_date
from edge_search.runtime.jobs.dupes import DupesReport, find_duplicates
from edge_search.runtime.jobs.indexer import IndexReport, RunOptions, run_index
from edge_search.runtime.jobs.verify import (
    Check,
    check_bundle_files,
    check_graphs,
    check_index,
    check_providers,
)
from edge_search.runtime.jobs.videos import VideoEmbedder
from edge_search.runtime.locations import default_bundle_dir, default_index_dir
from edge_search.runtime.model import video
from edge_search.runtime.model.bundle import Bundle, family_threshold
from edge_search.runtime.model.embedder import EmbedResult, l2_normalize
from edge_search.runtime.model.model import Model
from edge_search.runtime.options import CudaOptions, DecodeLimits, ImageSource, ModelOptions
from edge_search.runtime.store import vector_index as vi
from edge_search.runtime.store.catalog import (
    Catalog,
    Failure,
    Root,
    RootRules,
    encode_path,
    is_frame_key,
    recorded_meta,
)
from edge_search.runtime.store.generations import (
    Hit,
    IndexReader,
    IndexWriter,
    check_binding,
    refuse_foreign_directory,
)
from edge_search.runtime.store.meta import IndexMeta
from edge_search.runtime.store.vector_index import IndexOptions

if TYPE_CHECKING:
    from edge_search.runtime.scale.fleet import Fleet, FleetHit, SyncReport
    from edge_search.runtime.scale.ray_embedder import RayOptions

MAX_K = 100_000  # results one query may ask for (the service's own cap, --max-k, is lower)
STORED = "stored embeddings"  # the provider of a query answered from the index alone (known_photos)


def _check_bounds(k: int, min_score: float | None, vector: np.ndarray | None = None) -> None:
    """A query's numbers within their documented ranges (NaN is in no range): no answer can then hold NaN."""
    if not 1 <= k <= MAX_K:
        raise UsageError(f"k must be between 1 and {MAX_K}, not {k}.")
    if min_score is not None and not -1.0 <= min_score <= 1.0:
        raise UsageError(f"The minimum score is a cosine similarity between -1 and 1, not {min_score}.")
    if vector is not None and not np.isfinite(np.asarray(vector, dtype=np.float64)).all():
        raise UsageError("A query vector must hold finite numbers only.")


# ---------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class QueryResult:
    hits: list[Hit]
    provider: str | None = None
    precision: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FleetQueryResult:
    hits: list[FleetHit]
    collection: str
    provider: str | None = None
    precision: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RemoveReport:
    removed: int
    forgotten_roots: list[str]
    generation: int
    notes: list[str] = field(default_factory=list)  # e.g. that a folder inside an indexed one comes back


@dataclass(frozen=True)
class LibraryInfo:
    index: str
    count: int
    failed: int
    meta: IndexMeta
    roots: list[Root]
    size_bytes: int
    engines: dict[str, str] = field(default_factory=dict)  # kind of job -> what `auto` takes there, and why
    engine_trials: list[dict[str, Any]] = field(default_factory=list)  # what `auto` measured here (model.tuning)
    videos: int = 0  # of `count`, the videos (their frames are embedded, not the files)
    frames: int = 0
    token_merging: dict[str, Any] | None = None  # the recorded bundle's (its manifest's), when it merges tokens

    def as_dict(self) -> dict[str, Any]:
        m = self.meta
        return {
            "index": self.index,
            "count": self.count,
            "failed": self.failed,
            "model": m.model_id,
            "dim": m.dim,
            "precision": m.precision,
            "vector_dtype": m.vector_dtype,
            "connectivity": m.connectivity,
            "expansion_search": m.expansion_search,
            "bundle_path": m.bundle_path,
            "bundle_identity": m.bundle_identity,
            "random_weights": m.random_weights,
            "index_count": m.index_count,
            "generation": m.generation,
            "index_file": m.index_file,
            "last_indexed_at": m.last_indexed_at,
            "roots": [
                {
                    "path": r.path,
                    "excludes": list(r.excludes),
                    "include_hidden": r.include_hidden,
                    "follow_links": r.follow_links,
                }
                for r in self.roots
            ],
            "size_bytes": self.size_bytes,
            "engines": self.engines,
            "engine_trials": self.engine_trials,
            "videos": self.videos,
            "frames": self.frames,
            "token_merging": self.token_merging,
        }


@dataclass(frozen=True)
class VerifyReport:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)


# --------------------------------------------------------------------------------------- Library
def check_something_to_index(paths: Sequence[str]) -> None:
    """UsageError when none of the folders (or files) to index exists."""
    if not any(os.path.exists(p) for p in paths):
        missing = ", ".join(paths)
        raise UsageError(
            f"Nothing to index: {missing} does not exist."
            if len(paths) == 1
            else f"Nothing to index: none of {missing} exists."
        )


class Library:
    """One index directory. Reads take no lock and see the last committed generation (a long-lived
    Library picks up newer ones); `index` and `remove` are the single writer for their duration.

    Safe to share between threads: each thread that reads gets its own reader (SQLite connections stay with
    the thread that uses them); `close` closes them all, from any thread."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = Path(directory or default_index_dir()).expanduser()
        self._local = threading.local()
        self._readers: list[IndexReader] = []
        self._readers_lock = threading.Lock()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's reader; the next read in a thread opens a new one."""
        with self._readers_lock:
            readers, self._readers = self._readers, []
            self._local = threading.local()
        for reader in readers:
            reader.close()

    # -- what is recorded -------------------------------------------------------------------------
    def exists(self) -> bool:
        return Catalog.path_in(self.directory).exists()

    def _recorded(self, read: Callable[[Catalog], Any], empty: Any) -> Any:
        """What the catalog records (no lock, no model), or `empty` where nothing is recorded yet: no
        index, or a first run killed while it was creating the catalog."""
        if not self.exists():
            return empty
        try:
            with Catalog.open(self.directory, create=False) as catalog:
                return read(catalog)
        except IndexMissing:
            return empty

    def meta(self) -> IndexMeta:
        """The recorded meta, or an empty one where there is no index yet."""
        return recorded_meta(self.directory)

    def roots(self) -> list[Root]:
        """The folders earlier runs indexed (what `index` with no folder updates)."""
        return self._recorded(Catalog.roots, [])

    def failures(self) -> list[Failure]:
        with Catalog.open(self.directory, create=False) as catalog:
            return catalog.failures()

    def bundle_path(self) -> Path:
        """The bundle this index was built with, else export-model's default location."""
        recorded = self.meta().bundle_path
        return Path(recorded) if recorded else default_bundle_dir()

    def open_model(self, bundle: str | os.PathLike[str] | None = None, options: ModelOptions | None = None) -> Model:
        """A Model for this index: `bundle` if given, else the recorded one."""
        return Model.open(Bundle.load(Path(bundle) if bundle else self.bundle_path()), options)

    # -- writing ----------------------------------------------------------------------------------
    def index(
        self,
        model: Model,
        roots: Sequence[str | os.PathLike] | None = None,
        *,
        rules: RootRules = RootRules(),
        run: RunOptions = RunOptions(),
        settings: vi.IndexOptions | None = None,
        ray: RayOptions | None = None,
    ) -> IndexReport:
        """Index `roots` (or, when None, every root remembered from earlier runs) and remember them.

        `rules`: how the folders are walked (excludes, hidden files, links out); what a rule leaves None, each
        folder takes from what it remembered. `run`: pruning, publish cadence, progress callbacks, stop.
        `ray`: embed on a Ray cluster instead of this process (the walk, hashes, lock and commits stay here).
        Roots that do not exist are listed in the report's `missing_roots` and the others are indexed; if none
        exists, UsageError before anything is created. `settings`: usearch options for a new index, or to
        rebuild this one with.
        """
        recorded_roots, meta = self._recorded(lambda c: (c.roots(), c.index_meta()), ([], IndexMeta()))
        remembered = {r.path: r for r in recorded_roots}
        if roots is None:
            if not remembered:
                raise UsageError(
                    f"No folders to index: name one (`edge-search index DIR`); {self.directory} remembers none yet."
                )
            wanted = list(remembered.values())
        else:
            wanted = [Root(os.path.abspath(os.path.expanduser(os.fspath(r)))) for r in roots]
        wanted = [rules.apply(r, remembered.get(r.path)) for r in wanted]
        check_something_to_index([r.path for r in wanted])
        cluster = None
        if ray is not None:  # joined before the index is touched: a cluster that is down changes nothing here
            from edge_search.runtime.scale.ray_embedder import (
                RayEmbedder,  # Ray is imported only when asked for
            )

            cluster = RayEmbedder(model, ray)
        try:
            with IndexWriter(
                self.directory,
                model.bundle,
                precision=model.precision,
                settings=_settings(model, meta, settings),
            ) as writer:
                writer.remember_roots(r for r in wanted if os.path.exists(r.path))
                report = run_index(
                    writer,
                    cluster or model.embedder,
                    wanted,
                    run,
                    DecodeLimits(model.preprocessor.max_pixels),
                    videos=VideoEmbedder(model.embedder) if video.available() else None,  # on this box, even with Ray
                )
        finally:
            if cluster is not None:
                cluster.close()
        if cluster is not None:
            report.cluster = cluster.describe() + (
                f", {cluster.plan.lost} lost and replaced" if cluster.plan.lost else ""
            )
        return report

    def check_location(self, folders: Sequence[str | os.PathLike] = ()) -> None:
        """UsageError unless an index may be written here (a new or empty folder, or one holding an index) and at
        least one of the `folders` to index exists: checked before a model is loaded."""
        refuse_foreign_directory(self.directory)
        if folders:
            check_something_to_index([os.path.abspath(os.path.expanduser(os.fspath(f))) for f in folders])

    def remove(self, paths: Sequence[str | os.PathLike]) -> RemoveReport:
        """Forget files, or everything under folders (and those folders as roots). No model needed."""
        if not self.exists():
            raise IndexMissing(f"No index at {self.directory} yet; nothing to remove.")
        targets = [encode_path(os.path.abspath(os.path.expanduser(os.fspath(p)))) for p in paths]
        with IndexWriter(self.directory, None, precision=None) as writer:
            states, roots = writer.catalog.states(), writer.catalog.roots()
            indexed = [*states, *(encode_path(r.path) for r in roots)]
            unknown = [os.fsdecode(t) for t in targets if not any(under(p, [t]) for p in indexed)]
            if unknown:
                raise UsageError(
                    f"Nothing to remove: no indexed file or folder is at or under {', '.join(unknown)}. "
                    f"{self._roots_line(roots)} Nothing was removed."
                )
            doomed = [p for p in states if under(p, targets)]
            removed = writer.delete_paths(doomed)
            forgotten = [r.path for r in roots if under(encode_path(r.path), targets)]
            writer.forget_roots(encode_path(p) for p in forgotten)
            generation = writer.publish_if_changed()
        notes = [
            f"{os.fsdecode(t)} is inside the indexed folder {r.path}: the next `edge-search index` adds it back. "
            f"To keep it out: edge-search index {r.path} --exclude '{os.fsdecode(t)}' (--exclude replaces what "
            "the folder remembered: repeat those patterns too)."
            for t in targets
            for r in roots
            if r.path not in forgotten and under(t, [encode_path(r.path)])
        ]
        return RemoveReport(removed, forgotten, generation, notes)

    @staticmethod
    def _roots_line(roots: Sequence[Root]) -> str:
        if not roots:
            return "The index remembers no folders."
        return "Indexed folders: " + ", ".join(r.path for r in roots) + "."

    # -- reading ----------------------------------------------------------------------------------
    def reader(self) -> IndexReader:
        """This thread's lock-free reader, opened once and kept (IndexMissing if no index yet)."""
        reader: IndexReader | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = IndexReader(self.directory)
            with self._readers_lock:
                self._local.reader = reader
                self._readers.append(reader)
        return reader

    def latest(self, k: int = 24) -> list[tuple[int, str]]:
        """(key, path) of the `k` images added last, newest first: what a start page shows. No model needed."""
        return self.reader().catalog.latest(k)

    def frame_pictures(self, hits: Sequence[Hit]) -> dict[int, bytes]:
        """key -> the JPEG stored for each video hit's frame (what a montage or a page shows of a video)."""
        catalog = self.reader().catalog
        found = {hit.key: catalog.frame_thumbnail(hit.key) for hit in hits if is_frame_key(hit.key)}
        return {key: picture for key, picture in found.items() if picture is not None}

    def check_model(self, model: Model) -> None:
        """IndexMismatch unless `model` makes embeddings comparable with this index's."""
        catalog = self.reader().catalog
        check_binding(catalog, model.bundle)

    def query(
        self,
        model: Model | None = None,
        *,
        images: Sequence[ImageSource] = (),
        text: str | None = None,
        text_weight: float = 1.0,
        terms: Sequence[Term] = (),
        vector: np.ndarray | None = None,
        key: int | None = None,
        k: int = 10,
        min_score: float | None = None,
        under_dir: str | os.PathLike | None = None,
        exclude_self: bool = False,
        pixels: np.ndarray | None = None,
        dates: DateRange | None = None,
        kind: str | None = None,
    ) -> QueryResult:
        """The `k` indexed photos and videos most similar to the query, best first; a video is one result, at its
        best-matching moment (`Hit.at`, with `Hit.moments`). `kind` "photo" or "video" keeps only those.

        The query is one of: photos and/or words (CLIP bundles), a `vector` (unit or not), or the `key` of an
        indexed image ("more like this"; needs no model). Photos and words combine by `combined_query`'s rule
        (the weighted sum of unit embeddings, re-normalised): `terms` weighted, negative ones for results unlike
        them, and as shorthands `images` (weight 1 each) and `text` (weight `text_weight`). `under_dir` keeps
        results inside that folder; `dates` keeps photos taken in that range, searching among them alone (so
        `k` hits when `k` exist); `exclude_self` drops the query files themselves (same path or same content).
        `pixels`: the photos already decoded by `Model.preprocessor_for` with the model's options, in order
        (saves decoding them twice).
        """
        _check_bounds(k, min_score, vector)
        terms = _all_terms(terms, images, text, text_weight)
        if sum((len(terms) > 0, vector is not None, key is not None)) != 1:
            raise UsageError("Give exactly one query: photos and/or words, a vector or a key.")
        reader = self.reader()
        excluded_paths: set[str] = set()
        excluded_sha: set[str] = set()
        known: dict[int, np.ndarray] = {}
        if terms:
            known = known_photos.stored_vectors(reader.catalog, terms)  # answered without the model
            if model is None and known_photos.needs_model(terms, known):
                raise UsageError("A query by image or text needs a model (Library.open_model).")
            if model is not None:
                self.check_model(model)
        if key is not None:
            query = reader.catalog.vector(key)
            if query is None:
                raise UsageError(f"No indexed image has key {key}.")
            if exclude_self:
                excluded_sha.add(reader.catalog.sha256_of(key) or "")
        elif vector is not None:
            query = np.asarray(vector, dtype=np.float32).reshape(-1)
        else:
            query = combine(model, terms, pixels, known)
            if exclude_self:
                for term in terms:
                    if term.image is not None:
                        excluded_paths.update(_self_paths(term.image))
                        excluded_sha.add(_sha256(term.image))
        query = l2_normalize(query[None])[0]
        prefix = None
        if under_dir:
            prefix = [encode_path(os.path.abspath(os.path.expanduser(os.fspath(under_dir))))]
            roots = reader.catalog.roots()
            if roots and not any(
                under(p, prefix) or under(prefix[0], [p]) for p in (encode_path(r.path) for r in roots)
            ):
                raise UsageError(
                    f"--under {os.fsdecode(prefix[0])} is not inside any indexed folder, so nothing could be found "
                    f"there. {self._roots_line(roots)}"
                )
        if kind not in (None, "photo", "video"):
            raise UsageError(f"The kind of result is photo or video, not {kind!r}.")
        keep = None
        if prefix or excluded_paths or excluded_sha or kind:
            catalog = reader.catalog

            def keep(path: str, hit_key: int) -> bool:
                if kind is not None and is_frame_key(hit_key) != (kind == "video"):
                    return False
                if prefix and not under(os.fsencode(path), prefix):
                    return False
                if path in excluded_paths:
                    return False
                return not excluded_sha or catalog.sha256_of(hit_key) not in excluded_sha

        if dates is not None and not dates.empty:
            hits = reader.search_among(query, reader.catalog.keys_taken_between(dates.after, dates.before), k,
                                       min_score, keep)  # fmt: skip
        else:
            hits = reader.search(query, k, min_score, keep)
        hits = with_dates(reader.catalog, hits)
        notes = reader.take_notes()
        if model is None and terms:  # every photo was the index's own: its stored embeddings answered
            return QueryResult(hits, STORED, reader.meta.precision, notes)
        return QueryResult(hits, model.provider if model else None, model.precision if model else None, notes)

    def answers_without_model(self, terms: Sequence[Term]) -> bool:
        """Whether a query of these terms is answered from the index's stored embeddings alone (every term a photo
        the index holds): then no model need be opened."""
        known = known_photos.stored_vectors(self.reader().catalog, terms)
        return bool(terms) and not known_photos.needs_model(terms, known)

    def stored_embeddings(self, paths: Sequence[str | os.PathLike[str]]) -> list[EmbedResult] | None:
        """The stored embedding of each file, when every one is in the index (by content); else None (no index
        yet, or a file it does not hold: the model embeds them all, as one run)."""
        try:
            catalog = self.reader().catalog
        except IndexMissing:
            return None
        results = []
        for path in paths:
            known = known_photos.stored_vector(catalog, path)
            if known is None:
                return None
            results.append(EmbedResult(Path(path), vector=known[1], sha256=known[0]))
        return results

    def photos_to_embed(self, terms: Sequence[Term]) -> list[int]:
        """Positions, among the photo terms, of the photos the index does not hold: the only ones a query decodes
        and embeds (`query(pixels=...)` takes theirs alone)."""
        known = known_photos.stored_vectors(self.reader().catalog, terms)
        return [i for i in range(sum(t.image is not None for t in terms)) if i not in known]

    def dupes(
        self,
        threshold: float | None = None,
        *,
        under_dir: str | os.PathLike | None = None,
        dates: DateRange | None = None,
    ) -> DupesReport:
        """Groups of duplicate images (exact copies, and near-duplicates at or above `threshold`
        cosine; None: the bundle's recorded threshold, else its family's default), among the photos under
        `under_dir` and taken within `dates`, where given. Needs no model."""
        if threshold is not None and not 0.0 < threshold <= 1.0:
            raise UsageError(f"The threshold is a cosine similarity in (0, 1], not {threshold}.")
        reader = self.reader()
        source = "option"
        if threshold is None:
            threshold, source = self._recorded_threshold()
        report = find_duplicates(
            reader.catalog,
            reader.index(),
            threshold,
            under_dir=os.fspath(under_dir) if under_dir else None,
            taken_among=None
            if dates is None or dates.empty
            else set(reader.catalog.keys_taken_between(dates.after, dates.before).tolist()),
            threshold_source=source,
            random_weights=reader.meta.random_weights,
            index_dtype=reader.meta.vector_dtype,
        )
        report.notes.extend(reader.take_notes())
        return report

    def _recorded_threshold(self) -> tuple[float, str]:
        try:
            manifest = Bundle.load(self.bundle_path()).manifest
        except BundleError:
            return family_threshold(None), "default"
        if manifest.dupe_threshold is not None:
            return manifest.dupe_threshold, "bundle"
        return family_threshold(manifest.model_type), "default"

    # -- the fleet (Milvus) ----------------------------------------------------------------------
    def sync_fleet(
        self, uri: str, *, box: str | None = None, collection: str | None = None, token: str | None = None
    ) -> SyncReport:
        """Make this box's rows in the Milvus collection at `uri` equal to this index (paths and
        embeddings leave the box: opt-in). No model needed; incremental, idempotent, resumable."""
        from edge_search.runtime.scale.fleet import (
            Fleet,
            check_box,
            default_box,
            milvus_errors,
        )

        box = check_box(box or default_box())
        if not self.exists():
            raise IndexMissing(
                f"No index at {self.directory} yet: nothing to sync. Build one with `edge-search index DIR`."
            )
        with Catalog.open(self.directory, create=False) as catalog:
            meta = catalog.index_meta()
            if not meta.bound or meta.bundle_identity is None or meta.dim is None:
                raise IndexMissing.never_completed(self.directory)
            with milvus_errors(
                uri, "The sync stopped; what it wrote is kept, and `edge-search sync` again finishes it"
            ):
                fleet = Fleet.open(
                    uri,
                    identity=meta.bundle_identity,
                    dim=meta.dim,
                    model=meta.model_id or "",
                    collection=collection,
                    token=token,
                    create=True,
                    settings=meta,
                )
                try:
                    return fleet.sync(catalog, box)
                finally:
                    fleet.close()

    def open_fleet(self, uri: str, model: Model, *, collection: str | None = None, token: str | None = None) -> Fleet:
        """The Milvus collection that holds `model`'s embeddings (a long-lived client keeps it open; close() it)."""
        from edge_search.runtime.scale.fleet import Fleet, milvus_errors

        with milvus_errors(uri, "Nothing was read"):
            return Fleet.open(
                uri,
                identity=model.bundle.identity,
                dim=model.bundle.manifest.embedding_dim,
                collection=collection,
                token=token,
            )

    def query_fleet(
        self,
        fleet: str | Fleet,
        model: Model,
        *,
        images: Sequence[ImageSource] = (),
        text: str | None = None,
        text_weight: float = 1.0,
        terms: Sequence[Term] = (),
        k: int = 10,
        min_score: float | None = None,
        box: str | None = None,
        collection: str | None = None,
        token: str | None = None,
    ) -> FleetQueryResult:
        """The `k` images most like the query across every box synced to the Milvus collection (or one
        `box`). `fleet`: a Milvus URI (opened and closed for this query) or an open `Fleet`."""
        from edge_search.runtime.scale.fleet import milvus_errors

        _check_bounds(k, min_score)
        terms = _all_terms(terms, images, text, text_weight)
        if not terms:
            raise UsageError("Give query images and/or text.")
        vector = combine(model, terms)
        opened = self.open_fleet(fleet, model, collection=collection, token=token) if isinstance(fleet, str) else fleet
        try:
            with milvus_errors(opened.uri, "The query could not finish"):
                hits = opened.search(vector, k, box=box, min_score=min_score)
        finally:
            if isinstance(fleet, str):
                opened.close()
        return FleetQueryResult(hits, opened.name, model.provider, model.precision, list(model.notes))

    def warm(self) -> None:
        """Open the catalog and load the index now (a cold query overlaps this with model loading)."""
        self.reader().index()

    def info(self) -> LibraryInfo:
        if not self.exists():
            raise IndexMissing(f"No index at {self.directory} yet. Build one with `edge-search index DIR`.")
        with Catalog.open(self.directory, create=False) as catalog:
            videos, frames = catalog.count_videos()
            return LibraryInfo(
                videos=videos,
                frames=frames,
                index=str(self.directory),
                count=catalog.count("ok"),
                failed=catalog.count("failed"),
                meta=catalog.index_meta(),
                roots=catalog.roots(),
                size_bytes=sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file()),
                engines=self._auto_engines(),
                engine_trials=self._engine_trials(),
                token_merging=self._token_merging(),
            )

    def _token_merging(self) -> dict[str, Any] | None:
        try:
            return Bundle.load(self.bundle_path()).manifest.token_merging
        except EdgeSearchError:
            return None

    def _auto_engines(self) -> dict[str, str]:
        """What `auto` would take for each kind of job with the recorded bundle, and why (empty when the bundle
        or onnxruntime is missing: `verify` says what is wrong)."""
        from edge_search.runtime.model.session import auto_choices, plan_label

        try:
            choices = auto_choices(Bundle.load(self.bundle_path()))
        except EdgeSearchError:
            return {}
        return {job: f"{plan_label(plan)} · {plan.why}" for job, plan in choices.items()}

    def _engine_trials(self) -> list[dict[str, Any]]:
        """The CPU engines measured for the recorded bundle on this machine (`model.tuning`; empty: not yet)."""
        from edge_search.runtime.model.session import tuning_of

        try:
            measured = tuning_of(Bundle.load(self.bundle_path()), None, measure=False)
        except EdgeSearchError:
            return []
        return [] if measured is None else [trial.as_dict() for trial in measured.trials]

    def verify(self, bundle: str | os.PathLike | None = None, retune: bool = False) -> VerifyReport:
        """Every check a user needs when something looks wrong (IndexMissing if there is no index). `retune`:
        measure the CPU engines `auto` chooses among again (`model.tuning`)."""
        if not self.exists():
            raise IndexMissing(
                f"No index at {self.directory} yet: nothing to verify. Build one with `edge-search index DIR`."
            )
        root = Path(bundle) if bundle else self.bundle_path()
        return VerifyReport(
            check_bundle_files(root) + check_graphs(root) + check_index(self.directory) + check_providers(root, retune)
        )


def _settings(model: Model, meta: IndexMeta, requested: vi.IndexOptions | None) -> vi.IndexSettings | None:
    """The usearch settings a run asks for, over what the index has (or the defaults for this model)."""
    if requested is None or requested.empty:
        return None
    base = meta.settings if meta.bound else vi.IndexSettings(dim=model.bundle.dim)
    return requested.applied_to(base)


def _all_terms(
    terms: Sequence[Term], images: Sequence[ImageSource], text: str | None, text_weight: float
) -> list[Term]:
    """`terms` and the shorthands: each of `images` weighs 1, `text` weighs `text_weight`."""
    shorthand = [Term(image=image) for image in images]
    if text is not None:
        shorthand.append(Term(text=text, weight=text_weight))
    return [*terms, *shorthand]


def with_dates(catalog: Catalog, hits: list[Hit]) -> list[Hit]:
    """`hits` with when each photo was taken, where the catalog knows."""
    known = catalog.taken_of(hit.key for hit in hits)
    return [replace(hit, taken=describe_date(known[hit.key][0])) if hit.key in known else hit for hit in hits]


def _self_paths(image: ImageSource) -> set[str]:
    if isinstance(image, (str, os.PathLike)):
        return {os.path.abspath(os.fspath(image))}
    return set()


def _sha256(image: ImageSource) -> str:
    if isinstance(image, (bytes, str, os.PathLike)):
        return known_photos.content_hash(image) or ""  # (hashed once per command: the query asked already)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return hashlib.sha256(buffer.getvalue()).hexdigest()


__all__ = [
    "CudaOptions",
    "DupesReport",
    "FleetQueryResult",
    "Failure",
    "Hit",
    "ImageDecodeError",
    "IndexOptions",
    "IndexReport",
    "Library",
    "LibraryInfo",
    "Model",
    "ModelOptions",
    "QueryResult",
    "RemoveReport",
    "Root",
    "RootRules",
    "RunOptions",
    "VerifyReport",
]
