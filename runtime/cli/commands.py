"""The commands: options in, one library call, rendering out."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from edge_search.runtime import prewarm
from edge_search.runtime.cli.app import app
from edge_search.runtime.cli.options import (
    AfterOpt,
    BeforeOpt,
    BoxOpt,
    CollectionOpt,
    ConnectivityOpt,
    DtypeOpt,
    ExcludeOpt,
    ExcludeSelfOpt,
    ExpansionAddOpt,
    ExpansionSearchOpt,
    FleetBoxOpt,
    FoldersArg,
    FollowLinksOpt,
    IncludeHiddenOpt,
    IndexOpt,
    JsonOpt,
    KindOpt,
    MilvusOpt,
    MilvusTokenOpt,
    MinScoreOpt,
    ModelOpt,
    MontageOpt,
    NoPruneOpt,
    PathsOnlyOpt,
    Print0Opt,
    PublishEveryOpt,
    QueryImagesArg,
    RayCpusOpt,
    RayOpt,
    RayShipBytesOpt,
    RayTimeoutOpt,
    TextOpt,
    TextWeightOpt,
    TopOpt,
    UnderOpt,
    UnlikeOpt,
    UnlikeTextOpt,
    VerboseOpt,
    with_model_options,
)
from edge_search.runtime.cli.render import (
    Answer,
    Progress,
    echo,
    emit_json,
    emit_paths,
    err,
    fleet_results,
    human,
    human_size,
    index_announcement,
    index_report,
    info_lines,
    model_notes,
    say,
    search_results,
)
from edge_search.runtime.errors import ImagesFailed, Interrupted, UsageError
from edge_search.runtime.jobs.combined_query import Term, terms_from, weighted
from edge_search.runtime.jobs.dates import DateRange
from edge_search.runtime.library import STORED, IndexOptions, IndexReport, Library, Model, RootRules, RunOptions
from edge_search.runtime.model.embedder import EmbedResult
from edge_search.runtime.options import ModelOptions


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """The first Ctrl-C or SIGTERM asks the run to stop after committing; a second one ends the process at once,
    whatever its threads are blocked in (what was committed before is safe in the catalog)."""
    stop = threading.Event()

    def handler(signum, _frame):
        if stop.is_set():
            err.print("\nstopped at once: what was committed is kept; the next index resumes")
            os._exit(128 + signum)
        stop.set()
        err.print("\nstopping: committing what was embedded (Ctrl-C again to quit at once)…")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# ---------------------------------------------------------------------------------------------- embed
@app.command(help="Embed images and print one line per image (path and embedding, or the error).")
@with_model_options(one_shot=True)
def embed(
    images: Annotated[list[Path] | None, typer.Argument(help="Image files.")] = None,
    texts: Annotated[
        list[str] | None, typer.Option("--text", "-t", help="Also embed these words (CLIP bundles); repeatable.")
    ] = None,
    model: ModelOpt = None,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    model_options: ModelOptions = ModelOptions(),
) -> None:
    if not images and not texts:
        raise UsageError("Give image files, or --text WORDS.")
    library = Library(index)
    stored = None if texts or _names_another_bundle(model, library) else library.stored_embeddings(images or [])
    if stored is not None:  # every image is in the index: its stored embedding, no model opened
        meta = library.meta()
        engine = (STORED, meta.precision, meta.model_id, meta.random_weights)
        results: Iterable[EmbedResult] = stored
    else:
        opened = library.open_model(model, model_options)  # --model, else the bundle the index recorded
        model_notes(opened, opened.bundle.root, verbose)
        engine = (opened.provider, opened.precision, opened.bundle.manifest.model_id, opened.random_weights)
        for text in texts or []:
            vector = opened.embed_text(text)
            if as_json:
                emit_json({"text": text, "embedding": [round(float(v), 7) for v in vector]})
            else:
                echo(f"{text!r}\t{len(vector)}-d\t[{' '.join(f'{v:+.4f}' for v in vector[:4])} …]")
        results = opened.embed_paths(images or [])
    started = time.perf_counter()
    failed = done = 0
    for result in results:
        done += 1
        path = os.fspath(result.path)
        if result.vector is not None:
            if as_json:
                emit_json({"path": path, "embedding": [round(float(v), 7) for v in result.vector]})
            else:
                head = " ".join(f"{v:+.4f}" for v in result.vector[:4])
                echo(f"{human(path)}\t{len(result.vector)}-d\t[{head} …]")
        else:
            failed += 1
            if as_json:
                emit_json({"path": path, "error": result.error})
            else:
                say("error:", "red", f"{human(path)}: {result.error}")
    seconds = time.perf_counter() - started
    provider, precision, model_id, random_weights = engine
    summary = {
        "summary": True,
        "images": done,
        "failed": failed,
        "provider": provider,
        "precision": precision,
        "seconds": round(seconds, 3),
        "images_per_s": round(done / seconds, 2) if seconds else None,
        "model": model_id,
        "random_weights": random_weights,
    }
    err.print(
        json.dumps(summary)
        if as_json
        else f"{done} image(s), {failed} failed · {provider} {precision} · {seconds:.2f}s"
    )
    if failed:
        raise ImagesFailed(f"{failed} of {done} image(s) could not be read (listed above).")


def _say_missing_glyphs(names: Iterable[str]) -> None:
    """Once per sheet-drawing command: names the fonts here cannot draw, and the package that can."""
    from edge_search.runtime.jobs.fonts import missing_glyphs_note

    note = missing_glyphs_note(names)
    if note:
        say("note:", "yellow", note)


def _names_another_bundle(model: Path | None, library: Library) -> bool:
    """Whether --model names a bundle other than the one the index was built with (then it, not the index's
    stored embeddings, answers: a mismatch is reported as such)."""
    return model is not None and Path(model).expanduser().resolve() != library.bundle_path().expanduser().resolve()


# ---------------------------------------------------------------------------------------------- index
@dataclass(frozen=True)
class IndexCommand:
    """`edge-search index`, parsed: what to index, how, and how to answer."""

    folders: list[Path] | None
    index: Path | None
    model: Path | None
    excludes: tuple[str, ...] | None
    include_hidden: bool | None
    follow_links: bool | None
    prune: bool
    settings: IndexOptions
    publish_every_s: float
    ray: str | None
    ray_ship_bytes: bool
    ray_cpus_per_worker: int | None
    ray_timeout_s: float
    as_json: bool
    verbose: bool


@app.command(
    help="Index (or update) image folders: new and changed files are embedded, moved ones keep their "
    "embedding, deleted ones are removed. With no folder, every folder indexed before is updated."
)
@with_model_options()
def index(
    dirs: FoldersArg = None,
    index: IndexOpt = None,
    model: ModelOpt = None,
    exclude: ExcludeOpt = None,
    include_hidden: IncludeHiddenOpt = None,
    follow_links: FollowLinksOpt = None,
    no_prune: NoPruneOpt = False,
    vector_dtype: DtypeOpt = None,
    connectivity: ConnectivityOpt = None,
    expansion_add: ExpansionAddOpt = None,
    expansion_search: ExpansionSearchOpt = None,
    publish_every: PublishEveryOpt = 30.0,
    ray: RayOpt = None,
    ray_ship_bytes: RayShipBytesOpt = False,
    ray_cpus_per_worker: RayCpusOpt = None,
    ray_timeout: RayTimeoutOpt = 60.0,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    model_options: ModelOptions = ModelOptions(),
) -> None:
    if not ray and (ray_ship_bytes or ray_cpus_per_worker):
        raise UsageError("--ray-ship-bytes and --ray-cpus-per-worker go with --ray ADDRESS.")
    settings = IndexOptions(
        dtype=vector_dtype, connectivity=connectivity, expansion_add=expansion_add, expansion_search=expansion_search
    )
    command = IndexCommand(
        folders=dirs,
        index=index,
        model=model,
        excludes=tuple(exclude) if exclude is not None else None,
        include_hidden=include_hidden,
        follow_links=follow_links,
        prune=not no_prune,
        settings=settings,
        publish_every_s=publish_every,
        ray=ray,
        ray_ship_bytes=ray_ship_bytes,
        ray_cpus_per_worker=ray_cpus_per_worker,
        ray_timeout_s=ray_timeout,
        as_json=as_json,
        verbose=verbose,
    )
    _run_index(command, model_options)


def _run_index(command: IndexCommand, model_options: ModelOptions) -> None:
    library = Library(command.index)
    library.check_location(command.folders or ())  # `--index /`, other files, nothing to index: before a model
    if not command.folders and not library.roots():
        raise UsageError(
            f"Name a folder to index (`edge-search index ~/Pictures`); the index at {library.directory} "
            "remembers none yet."
        )
    opened = library.open_model(command.model, model_options)
    model_notes(opened, library.directory, command.verbose)
    cluster = None
    if command.ray:
        from edge_search.runtime.scale.ray_embedder import RayOptions

        cluster = RayOptions(
            command.ray,
            ship_bytes=command.ray_ship_bytes,
            cpus_per_worker=command.ray_cpus_per_worker,
            start_timeout_s=command.ray_timeout_s,
            batch_size=model_options.batch_size,
        )

    def started(files: int) -> None:  # the writer lock is held by then: a second indexer is refused before this
        if not command.as_json:
            index_announcement(library.directory, opened, command.ray)
        progress.start(files)

    # Ray's driver prints cluster events (a node marked dead) on stdout: keep stdout for results
    quiet_stdout = contextlib.redirect_stdout(sys.stderr) if command.ray else contextlib.nullcontext()
    with _stop_on_signals() as stop, Progress(enabled=err.is_terminal and not command.as_json) as progress:
        with quiet_stdout:
            report = library.index(
                opened,
                [os.fspath(d) for d in command.folders] if command.folders else None,
                rules=RootRules(command.excludes, command.include_hidden, command.follow_links),
                run=RunOptions(
                    prune=command.prune,
                    publish_every_s=command.publish_every_s,
                    on_start=started,
                    on_file=progress.file,
                    stop=stop,
                ),
                settings=command.settings,
                ray=cluster,
            )
    index_report(report, opened, library.directory, command.as_json)
    _raise_for(report)


def _raise_for(report: IndexReport) -> None:
    """The exit status of an index run that finished: interrupted, folders missing, or images unreadable."""
    if report.interrupted:
        raise Interrupted(
            f"Stopped early: {report.count} images are indexed and committed; {report.pending} file(s) "
            "were left for later. Run the same command to resume."
        )
    if report.missing_roots:
        raise UsageError(
            "No such file or folder: "
            + ", ".join(human(p) for p in report.missing_roots)
            + " (the other folders were indexed)."
        )
    if report.failed:
        raise ImagesFailed(f"{len(report.failed)} image(s) could not be read (listed above); the others were indexed.")


# ---------------------------------------------------------------------------------------------- query
@dataclass(frozen=True)
class QueryCommand:
    """`edge-search query`, parsed and checked: what to search with, where, and how to answer."""

    images: list[str]  # the query photos as given (weights included), for the answer's label
    terms: list[Term]  # photos (Path, or the bytes read from standard input) and phrases, weighted
    texts: list[str]
    dates: DateRange
    kind: str | None
    k: int
    min_score: float | None
    under: Path | None
    exclude_self: bool
    paths_only: bool
    print0: bool
    montage: Path | None
    milvus: str | None
    box: str | None
    collection: str | None
    milvus_token: str | None
    index: Path | None
    model: Path | None
    as_json: bool
    verbose: bool
    started: float = field(default_factory=time.perf_counter)

    @property
    def label(self) -> str | list[str] | None:
        """The query as the JSON answer names it."""
        return self.images if len(self.images) > 1 else (self.images[0] if self.images else None)

    @property
    def text(self) -> str | list[str] | None:
        return self.texts if len(self.texts) > 1 else (self.texts[0] if self.texts else None)

    @property
    def photo_sources(self) -> list:
        return [term.image for term in self.terms if term.image is not None]

    def latency_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000


@app.command(
    help="Find the indexed images most similar to IMAGE (which need not be indexed). Several images: "
    "what they have in common. '-' reads an image from standard input. --text searches by words (CLIP bundles), "
    "alone or with images; --unlike and --unlike-text push results away. Photos and words combine as the "
    "weighted sum of their embeddings (each weighs 1 unless it starts with WEIGHT:, e.g. 2:beach.jpg). "
    "--after / --before keep photos taken in that range (EXIF date, else the file's)."
)
@with_model_options(batch=False, one_shot=True)
def query(
    images: QueryImagesArg = None,
    text: TextOpt = None,
    text_weight: TextWeightOpt = 1.0,
    unlike: UnlikeOpt = None,
    unlike_text: UnlikeTextOpt = None,
    after: AfterOpt = None,
    before: BeforeOpt = None,
    kind: KindOpt = None,
    k: TopOpt = 10,
    min_score: MinScoreOpt = None,
    under: UnderOpt = None,
    exclude_self: ExcludeSelfOpt = False,
    paths_only: PathsOnlyOpt = False,
    print0: Print0Opt = False,
    montage: MontageOpt = None,
    milvus: MilvusOpt = None,
    box: FleetBoxOpt = None,
    collection: CollectionOpt = None,
    milvus_token: MilvusTokenOpt = None,
    index: IndexOpt = None,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    model_options: ModelOptions = ModelOptions(),
) -> None:
    images, texts, unlike, unlike_text = images or [], text or [], unlike or [], unlike_text or []
    _check_query(images + unlike, texts + unlike_text, milvus=milvus, fleet_only=bool(box or collection),
                 here_only=bool(under or exclude_self or montage or after or before or kind))  # fmt: skip
    dates = DateRange.asked(after, before)
    photos = [_photo_term(image, sign=1) for image in images] + [_photo_term(image, sign=-1) for image in unlike]
    words = terms_from(texts=texts, unlike_texts=unlike_text, text_weight=text_weight)
    command = QueryCommand(
        images=images,
        terms=photos + words,
        texts=texts,
        dates=dates,
        kind=kind.value if kind else None,
        k=k,
        min_score=min_score,
        under=under,
        exclude_self=exclude_self,
        paths_only=paths_only or print0,
        print0=print0,
        montage=montage,
        milvus=milvus,
        box=box,
        collection=collection,
        milvus_token=milvus_token,
        index=index,
        model=model,
        as_json=as_json,
        verbose=verbose,
    )
    if milvus:
        _query_fleet(command, model_options)
    else:
        _query_here(command, model_options)


def _photo_term(word: str, sign: int) -> Term:
    """A query photo as typed: `-` (standard input, read now) or a path, either may start with `WEIGHT:`."""
    weight, path = weighted(word)
    source = sys.stdin.buffer.read() if path == "-" else Path(path)
    return Term(image=source, weight=sign * weight)


def _check_query(images: list[str], texts: list[str], *, milvus: str | None, fleet_only: bool, here_only: bool):
    """Usage errors of `query`, before anything is read or loaded."""
    if not images and not texts:
        raise UsageError("Give a query image (or - for standard input), or --text WORDS.")
    paths = [weighted(image)[1] for image in images]  # a weight (2:beach.jpg) is not part of the path
    if paths.count("-") > 1:
        raise UsageError("Standard input ('-') can be read only once.")
    folders = [path for path in paths if path != "-" and os.path.isdir(path)]
    if folders:
        raise UsageError(f"{folders[0]} is a folder: a query is one or more image files (to search only inside a "
                         "folder, add --under FOLDER).")  # fmt: skip
    if not milvus and fleet_only:
        raise UsageError("--box and --collection go with --milvus URI.")
    if milvus and here_only:
        raise UsageError(
            "--under, --exclude-self, --montage, --after, --before and --type work on this box's index, not with "
            "--milvus."
        )


def _query_here(command: QueryCommand, model_options: ModelOptions) -> None:
    """The query against this box's index, the model opened while the index loads."""
    library = Library(command.index)
    library.reader()  # no index yet: say so before loading a model
    opened, pixels, early = None, None, False
    if not _names_another_bundle(command.model, library) and library.answers_without_model(command.terms):
        prewarm.drop()
        if command.verbose:
            say("note:", "dim", "every query photo is in the index: answered from its stored embedding, no model.")
    else:
        opened, pixels, early = _open_while_loading(library, command, model_options)
        model_notes(opened, library.directory, command.verbose)
    if command.verbose and early:
        say("note:", "dim", "the model session was started while the command line loaded (prewarm).")
    result = library.query(
        opened,
        terms=command.terms,
        k=command.k,
        min_score=command.min_score,
        under_dir=command.under,
        exclude_self=command.exclude_self,
        pixels=pixels,
        dates=command.dates,
        kind=command.kind,
    )
    frames = library.frame_pictures(result.hits) if command.montage is not None else {}
    library.close()
    latency_ms = command.latency_ms()
    for note in result.notes:
        say("note:", "yellow", note)
    if command.montage is not None:
        from edge_search.runtime.jobs.montage import write_montage

        photos = [term for term in command.terms if term.image is not None and term.weight > 0]
        labels = [str(term.image) if isinstance(term.image, Path) else "-" for term in photos]
        texts = [term.text for term in command.terms if term.text is not None and term.weight > 0]
        montage_text = " + ".join(texts) if texts else None
        sources = [term.image for term in photos]
        write_montage(labels, sources, result.hits, command.montage, text=montage_text, frames=frames)
        _say_missing_glyphs([*labels, *(hit.path for hit in result.hits)])
    answer = Answer(command.label, command.text, command.as_json, command.paths_only, command.print0, latency_ms)
    search_results(answer, result, montage=command.montage)


def _open_while_loading(library: Library, command: QueryCommand, model_options: ModelOptions):
    """(the model, query pixels decoded ahead or None, whether the session was the prewarmed one): onnxruntime
    builds the session (the one prewarmed since the CLI started, when it guessed these options) while this thread
    loads the index."""
    prewarmed = prewarm.take(command.model, command.index, model_options)
    pixels = None
    with ThreadPoolExecutor(max_workers=1) as pool:
        if prewarmed:
            pending = pool.submit(lambda: Model.open(prewarmed.bundle, model_options, session=prewarmed.session()))
        else:
            pending = pool.submit(library.open_model, command.model, model_options)
        library.warm()
        if prewarmed and command.photo_sources:  # decoded ahead if they were guessed right; else the query does it
            pixels = prewarmed.pixels(command.photo_sources, Model.preprocessor_for(prewarmed.bundle, model_options))
        return pending.result(), pixels, prewarmed is not None


def _query_fleet(command: QueryCommand, model_options: ModelOptions) -> None:
    """`query --milvus`: the same query, answered by every box synced to the collection."""
    library = Library(command.index)
    opened = library.open_model(command.model, model_options)
    model_notes(opened, library.directory, command.verbose)
    assert command.milvus is not None
    result = library.query_fleet(
        command.milvus,
        opened,
        terms=command.terms,
        k=command.k,
        min_score=command.min_score,
        box=command.box,
        collection=command.collection,
        token=command.milvus_token,
    )
    answer = Answer(
        command.label, command.text, command.as_json, command.paths_only, command.print0, command.latency_ms()
    )
    fleet_results(answer, result, command.milvus)


# ----------------------------------------------------------------------------------------------- sync
@app.command(
    help="Copy this box's index into a Milvus collection shared by a fleet of boxes (a server, or a Milvus "
    "Lite *.db file): adds what is new, updates what changed, deletes what this box no longer has. "
    "Sends file paths and embeddings off the box. Needs no model."
)
def sync(
    milvus: Annotated[
        str,
        typer.Option(
            "--milvus",
            metavar="URI",
            help="http://HOST:19530 (a Milvus server) or PATH.db (Milvus Lite).",
            envvar="EDGE_SEARCH_MILVUS",
            show_envvar=True,
        ),
    ],
    box: BoxOpt = None,
    collection: CollectionOpt = None,
    milvus_token: MilvusTokenOpt = None,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    report = Library(index).sync_fleet(milvus, box=box, collection=collection, token=milvus_token)
    if as_json:
        emit_json({**report.as_dict(), "milvus": milvus})
        return
    echo(
        f"added {report.added} · updated {report.updated} · deleted {report.deleted} · unchanged {report.unchanged}"
        f" — box {report.box} has {report.count} images in {report.collection} ({report.seconds:.1f}s)"
    )


# ---------------------------------------------------------------------------------------------- dupes
@app.command(
    help="Groups of duplicate images in the index: exact copies (same bytes) and near-duplicates (resized, "
    "re-encoded or mirrored copies: embeddings at or above --threshold and pixels that agree), each with its "
    "keeper, the original (most pixels, then oldest). Deletes nothing. Needs no model."
)
def dupes(
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            max=1.0,
            help="Cosine similarity at or above which two images are near-duplicates [default: the bundle's, "
            "set at export per model family].",
        ),
    ] = None,
    under: Annotated[Path | None, typer.Option(help="Only images inside this folder.")] = None,
    after: AfterOpt = None,
    before: BeforeOpt = None,
    montage_dir: Annotated[
        Path | None,
        typer.Option("--montage", help="Write one contact sheet per group into this folder (group-0001.jpg, ...)."),
    ] = None,
    paths_only: Annotated[
        bool,
        typer.Option(
            "-f",
            "--paths-only",
            help="Print only the files that are not their group's keeper, one per line (review before deleting "
            "anything).",
        ),
    ] = False,
    print0: Print0Opt = False,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    report = Library(index).dupes(threshold, under_dir=under, dates=DateRange.asked(after, before))
    for note in report.notes:
        say("note:", "yellow", note)
    if montage_dir is not None:
        from edge_search.runtime.jobs.montage import write_dupes_sheets

        write_dupes_sheets(report.groups, montage_dir)
        _say_missing_glyphs(f.path for group in report.groups for f in group.files)
    if as_json:
        emit_json({**report.as_dict(), "montage": os.fspath(montage_dir) if montage_dir else None})
        return
    if paths_only or print0:
        emit_paths((file.path for group in report.groups for file in group.files[1:]), nul=print0)
        return
    for number, group in enumerate(report.groups, 1):
        echo(f"group {number} · {group.kind} · {len(group.files)} files · keep: {group.kept_because}")
        checks = group.pixels_to_keep or [None] * len(group.files)
        for file, score, check in zip(group.files, group.scores_to_keep, checks):
            mark = "keep " if file.path == group.keep else f"{score:.4f}"
            size = f"{file.width}x{file.height}" if file.width else "?"
            when = file.taken or file.modified
            mirrored = "  (mirrored)" if check is not None and check.mirrored else ""
            echo(f"  {mark}  {size:>11}  {human_size(file.size):>8}  {when}  {human(file.path)}{mirrored}")
    err.print(
        f"{len(report.groups)} group(s), {report.redundant_files} file(s) beside their keeper, among {report.files} "
        f"photos (videos are not compared) · threshold {report.threshold:g} ({report.threshold_source})"
        f" · {report.seconds:.1f} s" + (f" · montages in {montage_dir}" if montage_dir else "")
    )


# ---------------------------------------------------------------------------------------------- info
@app.command(help="What the index holds and how it was built; --failed lists the files that could not be read.")
def info(
    index: IndexOpt = None,
    failed: Annotated[bool, typer.Option("--failed", help="List the files that failed, with why.")] = False,
    as_json: JsonOpt = False,
) -> None:
    library = Library(index)
    if failed:
        failures = library.failures()
        if as_json:
            emit_json({"failed": [{"path": f.path, "reason": f.reason} for f in failures]})
        else:
            for failure in failures:
                echo(f"{human(failure.path)}\t{failure.reason}")
            err.print(f"{len(failures)} file(s) failed")
        return
    data = library.info().as_dict()
    if as_json:
        emit_json(data)
        return
    for label, value in info_lines(data):
        echo(f"{label:<14} {value}")


# ---------------------------------------------------------------------------------------------- remove
@app.command(
    help="Remove files (or everything under folders) from the index; a removed folder is also forgotten "
    "as a root. Needs no model."
)
def remove(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders, as they were indexed.")],
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    report = Library(index).remove([os.path.abspath(p) for p in paths])
    if as_json:
        emit_json(
            {
                "removed": report.removed,
                "forgotten_roots": report.forgotten_roots,
                "generation": report.generation,
                "notes": report.notes,
            }
        )
        return
    for note in report.notes:
        say("note:", "yellow", note)
    echo(f"removed {report.removed} file(s) (generation {report.generation})")
    for root in report.forgotten_roots:
        err.print(f"forgot the root {human(root)}: `edge-search index` no longer updates it")


# ---------------------------------------------------------------------------------------------- verify
@app.command(
    help="Check the bundle's hashes, that each graph reproduces the embeddings recorded at export, the catalog, the "
    "index file and which providers really start."
)
def verify(
    index: IndexOpt = None,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
    retune: Annotated[
        bool,
        typer.Option(
            "--retune", help="Measure this machine's CPU engines for the bundle again (what `auto` takes; seconds)."
        ),
    ] = False,
) -> None:
    from edge_search.runtime.cli.app import EXIT_VERIFY_FAILED

    report = Library(index).verify(model, retune=retune)
    if as_json:
        emit_json(
            {
                "ok": report.ok,
                "checks": [{"name": c.name, "status": c.status, "ok": c.ok, "detail": c.detail} for c in report.checks],
            }
        )
    else:
        marks = {"ok": "ok  ", "fail": "FAIL", "info": "info"}
        width = max((len(check.name) for check in report.checks), default=0)  # one column, whatever the names
        for check in report.checks:
            echo(f"{marks[check.status]} {check.name:<{width}}  {check.detail}")
        echo("everything checks out" if report.ok else "some checks failed (FAIL above)")
    if not report.ok:
        raise typer.Exit(EXIT_VERIFY_FAILED)
