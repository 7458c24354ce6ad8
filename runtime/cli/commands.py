"""The commands: options in, one library call, rendering out."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import typer

from edge_search.runtime import prewarm
from edge_search.runtime.cli.app import app
from edge_search.runtime.cli.options import (
    BoxOpt,
    CollectionOpt,
    IndexOpt,
    JsonOpt,
    MilvusOpt,
    MilvusTokenOpt,
    ModelOpt,
    MontageOpt,
    Print0Opt,
    VerboseOpt,
    with_model_options,
)
from edge_search.runtime.cli.render import (
    Progress,
    echo,
    emit_json,
    emit_paths,
    err,
    human,
    human_size,
    info_lines,
    model_notes,
    say,
)
from edge_search.runtime.errors import ImagesFailed, Interrupted, UsageError
from edge_search.runtime.library import IndexOptions, Library, Model
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
@with_model_options()
def embed(
    images: Annotated[list[Path] | None, typer.Argument(help="Image files.")] = None,
    texts: Annotated[
        list[str] | None, typer.Option("--text", "-t", help="Also embed these words (CLIP bundles); repeatable.")
    ] = None,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    model_options: ModelOptions = ModelOptions(),
) -> None:
    if not images and not texts:
        raise UsageError("Give image files, or --text WORDS.")
    opened = Model.open(model, model_options)
    model_notes(opened, opened.bundle.root, verbose)
    for text in texts or []:
        vector = opened.embed_text(text)
        if as_json:
            emit_json({"text": text, "embedding": [round(float(v), 7) for v in vector]})
        else:
            echo(f"{text!r}\t{len(vector)}-d\t[{' '.join(f'{v:+.4f}' for v in vector[:4])} …]")
    images = images or []
    started = time.perf_counter()
    failed = done = 0
    for result in opened.embed_paths(images):
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
    summary = {
        "summary": True,
        "images": done,
        "failed": failed,
        "provider": opened.provider,
        "precision": opened.precision,
        "seconds": round(seconds, 3),
        "images_per_s": round(done / seconds, 2) if seconds else None,
        "model": opened.bundle.manifest.model_id,
        "random_weights": opened.random_weights,
    }
    err.print(
        json.dumps(summary)
        if as_json
        else f"{done} image(s), {failed} failed · {opened.provider} {opened.precision} · {seconds:.2f}s"
    )
    if failed:
        raise ImagesFailed(f"{failed} of {done} image(s) could not be read (listed above).")


# ---------------------------------------------------------------------------------------------- index
@app.command(
    help="Index (or update) image folders: new and changed files are embedded, moved ones keep their "
    "embedding, deleted ones are removed. With no folder, every folder indexed before is updated."
)
@with_model_options()
def index(
    dirs: Annotated[
        list[Path] | None,
        typer.Argument(help="Folders (or files) to index, recursively [default: the remembered ones]."),
    ] = None,
    index: IndexOpt = None,
    model: ModelOpt = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Glob of paths or names to skip; repeatable; remembered per folder.")
    ] = None,
    include_hidden: Annotated[
        bool | None,
        typer.Option(
            "--include-hidden/--skip-hidden",
            help="Also index hidden files and folders, thumbnail caches (@eaDir, .thumbnails) and recycle bins "
            "[default: skip them, or what the folder remembered].",
        ),
    ] = None,
    follow_links: Annotated[
        bool | None,
        typer.Option(
            "--follow-links/--no-follow-links",
            help="Also index photos that symlinks lead to outside the indexed folders (the service then serves "
            "them too) [default: skip such links and list them, or what the folder remembered].",
        ),
    ] = None,
    no_prune: Annotated[
        bool, typer.Option("--no-prune", help="Keep catalog entries of files deleted under DIR.")
    ] = False,
    vector_dtype: Annotated[
        str | None, typer.Option("--dtype", help="Index vector type: f16 (default), f32, i8.")
    ] = None,
    connectivity: Annotated[int | None, typer.Option(min=2, help="HNSW connectivity (M).")] = None,
    expansion_add: Annotated[int | None, typer.Option(min=1, help="HNSW expansion while building.")] = None,
    expansion_search: Annotated[int | None, typer.Option(min=1, help="HNSW expansion while searching.")] = None,
    publish_every: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds between index publishes while indexing (queries see progress).",
            envvar="EDGE_SEARCH_PUBLISH_EVERY",
        ),
    ] = 30.0,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Embed on this Ray cluster (e.g. 10.0.0.5:6379); the walk, hashes and commits stay on this "
            "box. Needs the ray extra here and on every node.",
            envvar="EDGE_SEARCH_RAY",
            show_envvar=True,
        ),
    ] = None,
    ray_ship_bytes: Annotated[
        bool,
        typer.Option(
            "--ray-ship-bytes",
            help="Send the files and the bundle to the Ray workers through the object store [default: workers "
            "read them at the same paths].",
        ),
    ] = False,
    ray_cpus_per_worker: Annotated[
        int | None,
        typer.Option(
            "--ray-cpus-per-worker",
            min=1,
            help="CPUs (= onnxruntime threads) per Ray worker [default: min(4, the smallest node's CPUs)].",
        ),
    ] = None,
    ray_timeout: Annotated[
        float,
        typer.Option("--ray-timeout", min=1, help="Seconds to wait for the cluster to place workers before giving up."),
    ] = 60.0,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    model_options: ModelOptions = ModelOptions(),
) -> None:
    if not ray and (ray_ship_bytes or ray_cpus_per_worker):
        raise UsageError("--ray-ship-bytes and --ray-cpus-per-worker go with --ray ADDRESS.")
    library = Library(index)
    library.check_location(dirs or ())  # `--index /`, a folder of other files, nothing to index: before a model loads
    if not dirs and not library.roots():
        raise UsageError(
            f"Name a folder to index (`edge-search index ~/Pictures`); the index at {library.directory} "
            "remembers none yet."
        )
    opened = library.open_model(model, model_options)
    model_notes(opened, library.directory, verbose)
    cluster = None
    if ray:
        from edge_search.runtime.scale.ray_embedder import RayOptions

        cluster = RayOptions(
            ray,
            ship_bytes=ray_ship_bytes,
            cpus_per_worker=ray_cpus_per_worker,
            start_timeout_s=ray_timeout,
            batch_size=model_options.batch_size,
        )
    if not as_json:
        where = f"the Ray cluster at {ray}" if ray else opened.provider
        err.print(
            f"Indexing into {library.directory} with the bundle at {opened.bundle.root} (from "
            f"{opened.bundle.manifest.model_id}) · {where} {opened.precision}"
        )
    settings = IndexOptions(
        dtype=vector_dtype, connectivity=connectivity, expansion_add=expansion_add, expansion_search=expansion_search
    )
    # Ray's driver prints cluster events (a node marked dead) on stdout: keep stdout for results
    quiet_stdout = contextlib.redirect_stdout(sys.stderr) if ray else contextlib.nullcontext()
    with _stop_on_signals() as stop, Progress(enabled=err.is_terminal and not as_json) as progress, quiet_stdout:
        report = library.index(
            opened,
            [os.fspath(d) for d in dirs] if dirs else None,
            excludes=exclude,
            include_hidden=include_hidden,
            follow_links=follow_links,
            prune=not no_prune,
            settings=settings,
            publish_every_s=publish_every,
            on_start=progress.start,
            on_file=progress.file,
            stop=stop,
            ray=cluster,
        )
    if as_json:
        emit_json(
            {
                **report.as_dict(),
                "provider": opened.provider,
                "precision": opened.precision,
                "index": str(library.directory),
            }
        )
    else:
        for path, reason in report.problems:
            say("skipped:", "yellow", f"{human(path)}: {reason}")
        for path, reason in report.failed:
            say("failed:", "red", f"{human(path)}: {reason}")
        echo(
            f"added {report.added} · updated {report.updated} · moved {report.moved} · removed {report.removed}"
            f" · unchanged {report.unchanged} · failed {len(report.failed)} — {report.count} images indexed"
            f" (generation {report.generation}, {report.seconds:.1f}s, {report.images_per_s:.1f} img/s)"
            + (f" · embedded by {report.cluster}" if report.cluster else "")
            + (f" · pixel signatures made for {report.signed} (nothing re-embedded)" if report.signed else "")
        )
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
@app.command(
    help="Find the indexed images most similar to IMAGE (which need not be indexed). Several images: "
    "their average, i.e. what they have in common. '-' reads an image from standard input. "
    "--text searches by words (CLIP bundles), alone or with images."
)
@with_model_options(batch=False)
def query(
    images: Annotated[list[str] | None, typer.Argument(help="Query image(s), or - for standard input.")] = None,
    text: Annotated[
        str | None,
        typer.Option(
            "--text", "-t", help='Search by words, e.g. "a dog on a beach" (CLIP bundles). With images: added to them.'
        ),
    ] = None,
    text_weight: Annotated[
        float, typer.Option(help="Weight of --text beside query images (negative: away from the words).")
    ] = 1.0,
    k: Annotated[int, typer.Option("-k", "--top", min=1, help="How many results.")] = 10,
    min_score: Annotated[
        float | None, typer.Option(min=-1.0, max=1.0, help="Drop results below this cosine similarity.")
    ] = None,
    under: Annotated[Path | None, typer.Option(help="Only results inside this folder.")] = None,
    exclude_self: Annotated[
        bool, typer.Option("--exclude-self", help="Leave out the query images themselves (same path or same content).")
    ] = False,
    paths_only: Annotated[
        bool, typer.Option("-f", "--paths-only", help="Print only the paths, one per line (for xargs, feh).")
    ] = False,
    print0: Print0Opt = False,
    montage: MontageOpt = None,
    milvus: MilvusOpt = None,
    box: Annotated[
        str | None, typer.Option("--box", help="With --milvus: only this box's images [default: every box].")
    ] = None,
    collection: CollectionOpt = None,
    milvus_token: MilvusTokenOpt = None,
    index: IndexOpt = None,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    model_options: ModelOptions = ModelOptions(),
) -> None:
    images = images or []
    paths_only = paths_only or print0
    if not images and text is None:
        raise UsageError("Give a query image (or - for standard input), or --text WORDS.")
    if images.count("-") > 1:
        raise UsageError("Standard input ('-') can be read only once.")
    folders = [image for image in images if image != "-" and os.path.isdir(image)]
    if folders:
        raise UsageError(f"{folders[0]} is a folder: a query is one or more image files (to search only inside a "
                         "folder, add --under FOLDER).")  # fmt: skip
    if not milvus and (box or collection):
        raise UsageError("--box and --collection go with --milvus URI.")
    if milvus and (under or exclude_self or montage):
        raise UsageError("--under, --exclude-self and --montage work on this box's index, not with --milvus.")
    sources: list = [sys.stdin.buffer.read() if image == "-" else Path(image) for image in images]
    started = time.perf_counter()
    library = Library(index)
    if milvus:
        _query_fleet(
            library,
            milvus,
            images,
            sources,
            text,
            text_weight,
            k,
            min_score,
            box,
            collection,
            milvus_token,
            model,
            model_options,
            as_json,
            paths_only,
            print0,
            verbose,
            started,
        )
        return
    library.reader()  # no index yet: say so before loading a model
    prewarmed = prewarm.take(model, index, model_options)  # a session being opened since the CLI started
    pixels = None
    with ThreadPoolExecutor(max_workers=1) as pool:
        # onnxruntime builds the session while this thread loads the index
        if prewarmed:
            pending = pool.submit(lambda: Model.open(prewarmed.bundle, model_options, session=prewarmed.session()))
        else:
            pending = pool.submit(library.open_model, model, model_options)
        library.warm()
        if prewarmed and sources:  # decoded ahead if they were guessed right; else library.query decodes them
            pixels = prewarmed.pixels(sources, Model.preprocessor_for(prewarmed.bundle, model_options))
        opened = pending.result()
    model_notes(opened, library.directory, verbose)
    result = library.query(
        opened,
        images=sources,
        text=text,
        text_weight=text_weight,
        k=k,
        min_score=min_score,
        under_dir=under,
        exclude_self=exclude_self,
        pixels=pixels,
    )
    library.close()
    latency_ms = (time.perf_counter() - started) * 1000
    for note in result.notes:
        say("note:", "yellow", note)
    if montage is not None:
        from edge_search.runtime.jobs.montage import write_montage

        write_montage(images, sources, result.hits, montage, text=text)
    if as_json:
        emit_json(
            {
                "query": images if len(images) > 1 else (images[0] if images else None),
                "text": text,
                "results": [hit.as_dict() for hit in result.hits],
                "provider": result.provider,
                "precision": result.precision,
                "latency_ms": round(latency_ms, 1),
                "montage": os.fspath(montage) if montage else None,
            }
        )
        return
    if paths_only:
        emit_paths((hit.path for hit in result.hits), nul=print0)
        return
    if not result.hits:
        echo("No results (the index is empty, or nothing scored above --min-score or lies under --under).")
    for hit in result.hits:
        echo(f"{hit.rank:>3}  {hit.score:.4f}  {human(hit.path)}")
    err.print(
        f"{len(result.hits)} result(s) · {result.provider} {result.precision} · {latency_ms:.0f} ms"
        + (f" · montage: {montage}" if montage else "")
    )


def _query_fleet(
    library: Library,
    uri: str,
    images: list[str],
    sources: list,
    text: str | None,
    text_weight: float,
    k: int,
    min_score: float | None,
    box: str | None,
    collection: str | None,
    token: str | None,
    model: Path | None,
    model_options: ModelOptions,
    as_json: bool,
    paths_only: bool,
    print0: bool,
    verbose: bool,
    started: float,
) -> None:
    """`query --milvus`: the same query, answered by every box synced to the collection."""
    opened = library.open_model(model, model_options)
    model_notes(opened, library.directory, verbose)
    result = library.query_fleet(
        uri,
        opened,
        images=sources,
        text=text,
        text_weight=text_weight,
        k=k,
        min_score=min_score,
        box=box,
        collection=collection,
        token=token,
    )
    latency_ms = (time.perf_counter() - started) * 1000
    if as_json:
        emit_json(
            {
                "query": images if len(images) > 1 else (images[0] if images else None),
                "text": text,
                "milvus": uri,
                "collection": result.collection,
                "results": [h.as_dict() for h in result.hits],
                "provider": result.provider,
                "precision": result.precision,
                "latency_ms": round(latency_ms, 1),
            }
        )
        return
    if paths_only:
        emit_paths((f"{hit.box}:{hit.path}" for hit in result.hits), nul=print0)
        return
    for hit in result.hits:
        echo(f"{hit.rank:>3}  {hit.score:.4f}  {hit.box}  {human(hit.path)}")
    if not result.hits:
        echo("No results (nothing synced to this collection yet, or nothing scored above --min-score).")
    err.print(
        f"{len(result.hits)} result(s) from {result.collection} · {result.provider} {result.precision} · "
        f"{latency_ms:.0f} ms"
    )


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
    report = Library(index).dupes(threshold, under_dir=under)
    for note in report.notes:
        say("note:", "yellow", note)
    if montage_dir is not None:
        from edge_search.runtime.jobs.montage import write_dupes_sheets

        write_dupes_sheets(report.groups, montage_dir)
    if as_json:
        emit_json({**report.as_dict(), "montage": os.fspath(montage_dir) if montage_dir else None})
        return
    if paths_only or print0:
        emit_paths((file.path for group in report.groups for file in group.files[1:]), nul=print0)
        return
    for number, group in enumerate(report.groups, 1):
        echo(f"group {number} · {group.kind} · {len(group.files)} files")
        for file, score in zip(group.files, group.scores_to_keep):
            mark = "keep " if file.path == group.keep else f"{score:.4f}"
            size = f"{file.width}x{file.height}" if file.width else "?"
            when = file.taken or file.modified
            echo(f"  {mark}  {size:>11}  {human_size(file.size):>8}  {when}  {human(file.path)}")
    err.print(
        f"{len(report.groups)} group(s), {report.redundant_files} file(s) beside their keeper, among {report.files} "
        f"images · threshold {report.threshold:g} ({report.threshold_source}) · {report.seconds:.1f} s"
        + (f" · montages in {montage_dir}" if montage_dir else "")
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
def verify(index: IndexOpt = None, model: ModelOpt = None, as_json: JsonOpt = False) -> None:
    from edge_search.runtime.cli.app import EXIT_VERIFY_FAILED

    report = Library(index).verify(model)
    if as_json:
        emit_json(
            {
                "ok": report.ok,
                "checks": [{"name": c.name, "status": c.status, "ok": c.ok, "detail": c.detail} for c in report.checks],
            }
        )
    else:
        marks = {"ok": "ok  ", "fail": "FAIL", "info": "info"}
        for check in report.checks:
            echo(f"{marks[check.status]} {check.name:<14} {check.detail}")
        echo("everything checks out" if report.ok else "some checks failed (FAIL above)")
    if not report.ok:
        raise typer.Exit(EXIT_VERIFY_FAILED)
