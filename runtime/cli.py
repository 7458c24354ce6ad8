"""`edge-search`: the Typer app. Thin commands over the runtime; the only place that prints or exits.

Exit codes: 0 ok · 1 internal error · 2 usage · 3 bad/missing model bundle · 4 one or more images
could not be read · 5 execution provider cannot start · 6 no index yet · 7 index built with another
bundle · 8 index or catalog corrupt · 9 another indexer is running · 10 cannot write (disk full,
read-only) · 130 interrupted.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from .errors import EdgeSearchError, ImageDecodeError

EXIT_IMAGES_FAILED = ImageDecodeError.exit_code

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Offline search-by-image: index a folder of photos, then find the ones that look like a given image.",
)
err = Console(stderr=True, soft_wrap=True, highlight=False)

ModelOpt = Annotated[Optional[Path], typer.Option("--model", help="Bundle directory made by export-model.", envvar="EDGE_SEARCH_MODEL", show_envvar=True)]
IndexOpt = Annotated[Optional[Path], typer.Option("--index", help="Index directory.", envvar="EDGE_SEARCH_INDEX", show_envvar=True)]
DeviceOpt = Annotated[str, typer.Option(help="auto | cpu | cuda.", envvar="EDGE_SEARCH_DEVICE", show_envvar=True)]
PrecisionOpt = Annotated[str, typer.Option(help="auto | fp32 | fp16 | int8 (auto: fp16 on CUDA, int8 on CPU).", envvar="EDGE_SEARCH_PRECISION", show_envvar=True)]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="CPU threads [default: the CPUs this process may use].", envvar="EDGE_SEARCH_THREADS")]
BatchOpt = Annotated[int, typer.Option(help="Images per model call.", envvar="EDGE_SEARCH_BATCH_SIZE")]
CudaIdOpt = Annotated[int, typer.Option(help="CUDA device id.", envvar="EDGE_SEARCH_CUDA_DEVICE")]
CudaMemOpt = Annotated[Optional[int], typer.Option(help="CUDA memory arena limit in MiB.", envvar="EDGE_SEARCH_CUDA_MEM_LIMIT_MB")]
CudaArenaOpt = Annotated[Optional[str], typer.Option(help="kNextPowerOfTwo | kSameAsRequested.", envvar="EDGE_SEARCH_CUDA_ARENA")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
DraftOpt = Annotated[bool, typer.Option("--jpeg-draft/--no-jpeg-draft", help="Decode large JPEGs at reduced size (DCT scaling): ~3.5x faster, cosine >= 0.99999 to full decoding in our tests.", envvar="EDGE_SEARCH_JPEG_DRAFT")]


def human(path: str) -> str:
    """A printable form of a path whose bytes may not be UTF-8 (lossless in --json output instead)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=True) + "\n")
    sys.stdout.flush()


@dataclass
class ModelRequest:
    model: Optional[Path]
    device: str
    precision: str
    threads: Optional[int]
    batch_size: int
    cuda_device_id: int
    cuda_mem_limit: Optional[int]
    cuda_arena: Optional[str]
    jpeg_draft: bool = True


def _load_bundle(request: ModelRequest, recorded_bundle: str | None = None):
    """The bundle named by --model, else the one the index recorded, else the default location."""
    from .bundle import Bundle
    from .locations import default_bundle_dir

    root = request.model or (Path(recorded_bundle) if recorded_bundle else default_bundle_dir())
    bundle = Bundle.load(root)
    if bundle.manifest.random_weights:
        err.print(f"[yellow]warning:[/] the bundle at {bundle.root} has RANDOM weights (speed tests only): results are meaningless.")
    return bundle


def _open_model(request: ModelRequest, bundle):
    """Verified session -> embedder, reporting provider notes."""
    from .embedder import Embedder
    from .preprocess import Preprocessor
    from .providers import CudaOptions
    from .session import open_session

    cuda = CudaOptions(
        device_id=request.cuda_device_id,
        mem_limit_bytes=request.cuda_mem_limit * 1024 * 1024 if request.cuda_mem_limit else None,
        arena_strategy=request.cuda_arena,
    )
    session, notes = open_session(bundle, device=request.device, precision=request.precision, threads=request.threads, cuda=cuda)
    for note in notes:
        err.print(f"[yellow]note:[/] {note}")
    preprocessor = Preprocessor.from_manifest(bundle.manifest, jpeg_draft=request.jpeg_draft)
    embedder = Embedder(session, preprocessor, batch_size=request.batch_size, workers=request.threads)
    return session, embedder


def _load_model(request: ModelRequest, recorded_bundle: str | None = None):
    bundle = _load_bundle(request, recorded_bundle)
    return (bundle, *_open_model(request, bundle))


def _index_dir(index: Optional[Path]) -> Path:
    from .locations import default_index_dir

    return (index or default_index_dir()).expanduser()


# ---------------------------------------------------------------------------------------------- embed
@app.command(help="Embed images and print one line per image (path and embedding, or the error).")
def embed(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    model: ModelOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    threads: ThreadsOpt = None,
    batch_size: BatchOpt = 8,
    cuda_device_id: CudaIdOpt = 0,
    cuda_mem_limit: CudaMemOpt = None,
    cuda_arena: CudaArenaOpt = None,
    jpeg_draft: DraftOpt = True,
    as_json: JsonOpt = False,
) -> None:
    request = ModelRequest(model, device, precision, threads, batch_size, cuda_device_id, cuda_mem_limit, cuda_arena, jpeg_draft)
    bundle, session, embedder = _load_model(request)
    started = time.perf_counter()
    failed = done = 0
    for result in embedder.embed(images):
        done += 1
        path = os.fspath(result.path)
        if result.ok:
            if as_json:
                emit_json({"path": path, "embedding": [round(float(v), 7) for v in result.vector]})
            else:
                head = " ".join(f"{v:+.4f}" for v in result.vector[:4])
                typer.echo(f"{human(path)}\t{len(result.vector)}-d\t[{head} …]")
        else:
            failed += 1
            if as_json:
                emit_json({"path": path, "error": result.error})
            else:
                err.print(f"[red]error:[/] {human(path)}: {result.error}")
    seconds = time.perf_counter() - started
    summary = {
        "summary": True, "images": done, "failed": failed, "provider": session.provider, "precision": session.precision,
        "seconds": round(seconds, 3), "images_per_s": round(done / seconds, 2) if seconds else None,
        "model": bundle.manifest.model_id, "random_weights": bundle.manifest.random_weights,
    }
    err.print(json.dumps(summary) if as_json else
              f"{done} image(s), {failed} failed · {session.provider} {session.precision} · {seconds:.2f}s")
    if failed:
        raise typer.Exit(EXIT_IMAGES_FAILED)


# ---------------------------------------------------------------------------------------------- index
@app.command(help="Index (or update) image folders: new and changed files are embedded, deleted ones removed.")
def index(
    dirs: Annotated[list[Path], typer.Argument(help="Folders (or files) to index, recursively.")],
    index: IndexOpt = None,
    model: ModelOpt = None,
    exclude: Annotated[Optional[list[str]], typer.Option(help="Glob of paths or names to skip; repeatable.")] = None,
    no_prune: Annotated[bool, typer.Option("--no-prune", help="Keep catalog entries of files deleted under DIR.")] = False,
    vector_dtype: Annotated[Optional[str], typer.Option("--dtype", help="Index vector type: f16 (default), f32, i8.")] = None,
    connectivity: Annotated[Optional[int], typer.Option(help="HNSW connectivity (M).")] = None,
    expansion_add: Annotated[Optional[int], typer.Option(help="HNSW expansion while building.")] = None,
    expansion_search: Annotated[Optional[int], typer.Option(help="HNSW expansion while searching.")] = None,
    publish_every: Annotated[float, typer.Option(help="Seconds between index publishes while indexing (queries see progress).", envvar="EDGE_SEARCH_PUBLISH_EVERY")] = 30.0,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    threads: ThreadsOpt = None,
    batch_size: BatchOpt = 8,
    cuda_device_id: CudaIdOpt = 0,
    cuda_mem_limit: CudaMemOpt = None,
    cuda_arena: CudaArenaOpt = None,
    jpeg_draft: DraftOpt = True,
    as_json: JsonOpt = False,
) -> None:
    from . import vector_index as vi
    from .indexer import run_index
    from .store import IndexWriter, settings_from_meta

    directory = _index_dir(index)
    recorded = _recorded_meta(directory)
    request = ModelRequest(model, device, precision, threads, batch_size, cuda_device_id, cuda_mem_limit, cuda_arena, jpeg_draft)
    bundle, session, embedder = _load_model(request, recorded.get("bundle_path"))
    settings = None
    if any(v is not None for v in (vector_dtype, connectivity, expansion_add, expansion_search)):
        if vector_dtype is not None and vector_dtype not in vi.DTYPES:
            raise typer.BadParameter(f"--dtype must be one of {', '.join(vi.DTYPES)}")
        current = settings_from_meta(recorded) if "dim" in recorded else None
        settings = vi.IndexSettings(
            dim=bundle.manifest.embedding_dim,
            dtype=vector_dtype or (current.dtype if current else vi.DEFAULT_DTYPE),
            connectivity=connectivity or (current.connectivity if current else vi.DEFAULT_CONNECTIVITY),
            expansion_add=expansion_add or (current.expansion_add if current else vi.DEFAULT_EXPANSION_ADD),
            expansion_search=expansion_search or (current.expansion_search if current else vi.DEFAULT_EXPANSION_SEARCH),
        )
    with IndexWriter(directory, bundle, precision=session.precision, settings=settings) as writer:
        if not as_json:
            err.print(f"Indexing into {directory} with {bundle.manifest.model_id} · {session.provider} {session.precision}")
        with _Progress(enabled=err.is_terminal and not as_json) as progress:
            summary = run_index(
                writer, embedder, dirs, excludes=tuple(exclude or ()), prune=not no_prune, publish_every_s=publish_every,
                on_total=progress.start, on_progress=progress.advance,
            )
    if as_json:
        emit_json({**summary.as_dict(), "provider": session.provider, "precision": session.precision, "index": str(directory)})
    else:
        for path, reason in summary.problems:
            err.print(f"[yellow]skipped:[/] {human(path)}: {reason}")
        for path, reason in summary.failed:
            err.print(f"[red]failed:[/] {human(path)}: {reason}")
        typer.echo(
            f"added {summary.added} · updated {summary.updated} · removed {summary.removed} · unchanged {summary.unchanged}"
            f" · failed {len(summary.failed)} — {summary.count} images indexed (generation {summary.generation},"
            f" {summary.seconds:.1f}s, {summary.images_per_s:.1f} img/s)"
        )
    if summary.failed:
        raise typer.Exit(EXIT_IMAGES_FAILED)


def _recorded_meta(directory: Path) -> dict[str, str]:
    """The meta table of an existing index, or {} where there is none yet."""
    from .catalog import Catalog
    from .errors import IndexMissing

    try:
        catalog = Catalog.open(directory, create=False)
    except IndexMissing:
        return {}
    try:
        return catalog.meta()
    finally:
        catalog.close()


class _Progress:
    """A rich progress bar (files done / total, images/s, ETA) on a terminal; nothing otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar = None
        self._task = None

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                TextColumn("[cyan]{task.fields[rate]}"),
                TimeRemainingColumn(), console=err, transient=True,
            )
            self._bar.__enter__()
        return self

    def start(self, total: int) -> None:
        if self._bar is not None:
            self._task = self._bar.add_task("embedding", total=total, rate="")
            self._t0 = time.perf_counter()
            self._done = 0

    def advance(self, n: int) -> None:
        if self._bar is not None and self._task is not None:
            self._done += n
            rate = self._done / max(time.perf_counter() - self._t0, 1e-9)
            self._bar.update(self._task, advance=n, rate=f"{rate:5.1f} img/s")

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


# ---------------------------------------------------------------------------------------------- query
@app.command(help="Find the indexed images most similar to IMG (which need not be indexed).")
def query(
    image: Annotated[Path, typer.Argument(help="The query image.")],
    k: Annotated[int, typer.Option("-k", "--top", min=1, help="How many results.")] = 10,
    min_score: Annotated[Optional[float], typer.Option(help="Drop results below this cosine similarity.")] = None,
    montage: Annotated[Optional[Path], typer.Option(help="Write the query and its results side by side to this image.")] = None,
    index: IndexOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    threads: ThreadsOpt = None,
    cuda_device_id: CudaIdOpt = 0,
    cuda_mem_limit: CudaMemOpt = None,
    cuda_arena: CudaArenaOpt = None,
    jpeg_draft: DraftOpt = True,
    as_json: JsonOpt = False,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from .preprocess import Preprocessor

    started = time.perf_counter()
    directory = _index_dir(index)
    recorded = _recorded_meta(directory)  # SQLite only: cheap, and it names the bundle
    request = ModelRequest(model, device, precision, threads, 1, cuda_device_id, cuda_mem_limit, cuda_arena, jpeg_draft)
    bundle = _load_bundle(request, recorded.get("bundle_path")) if recorded else None
    with ThreadPoolExecutor(max_workers=1) as pool:
        # onnxruntime builds the session while this thread loads usearch and decodes the query image.
        model_future = pool.submit(_open_model, request, bundle) if bundle else None
        from .store import IndexReader, check_bundle

        reader = IndexReader(directory)
        try:
            check_bundle(reader.catalog, bundle)
            pixels = Preprocessor.from_manifest(bundle.manifest, jpeg_draft=jpeg_draft).load(image)
            session, embedder = model_future.result()
            hits = reader.search(embedder.embed_pixels(pixels[None])[0], k, min_score)
            for note in reader.notes:
                err.print(f"[yellow]note:[/] {note}")
        finally:
            reader.close()
            if model_future is not None:
                model_future.cancel()
    latency_ms = (time.perf_counter() - started) * 1000
    if montage is not None:
        from .montage import write_montage

        write_montage(image, hits, montage)
    if as_json:
        emit_json({
            "query": os.fspath(image),
            "results": [{"rank": h.rank, "score": round(h.score, 6), "path": h.path} for h in hits],
            "provider": session.provider, "precision": session.precision, "latency_ms": round(latency_ms, 1),
            "montage": os.fspath(montage) if montage else None,
        })
        return
    if not hits:
        typer.echo("No results (the index is empty, or nothing scored above --min-score).")
    for hit in hits:
        typer.echo(f"{hit.rank:>3}  {hit.score:.4f}  {human(hit.path)}")
    err.print(f"{len(hits)} result(s) · {session.provider} {session.precision} · {latency_ms:.0f} ms"
              + (f" · montage: {montage}" if montage else ""))


# ---------------------------------------------------------------------------------------------- info
@app.command(help="What the index holds and how it was built.")
def info(index: IndexOpt = None, as_json: JsonOpt = False) -> None:
    from .store import IndexReader

    directory = _index_dir(index)
    reader = IndexReader(directory)
    try:
        meta = reader.meta
        data = {
            "index": str(directory),
            "count": reader.catalog.count("ok"),
            "failed": reader.catalog.count("failed"),
            "model": meta.get("model_id"),
            "dim": int(meta["dim"]) if "dim" in meta else None,
            "precision": meta.get("precision"),
            "vector_dtype": meta.get("vector_dtype"),
            "connectivity": int(meta.get("connectivity", 0)) or None,
            "expansion_search": int(meta.get("expansion_search", 0)) or None,
            "bundle_path": meta.get("bundle_path"),
            "bundle_sha256": meta.get("bundle_sha256"),
            "random_weights": bool(int(meta.get("random_weights", 0))),
            "index_count": int(meta.get("index_count", 0)),
            "generation": int(meta.get("generation", 0)),
            "index_file": meta.get("index_file"),
            "last_indexed_at": meta.get("last_indexed_at"),
            "size_bytes": sum(p.stat().st_size for p in directory.iterdir() if p.is_file()),
        }
    finally:
        reader.close()
    if as_json:
        emit_json(data)
        return
    for key, value in data.items():
        typer.echo(f"{key:<17} {value}")


# ---------------------------------------------------------------------------------------------- remove
@app.command(help="Remove files (or everything under folders) from the index.")
def remove(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders, as they were indexed.")],
    index: IndexOpt = None,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    from .bundle import Bundle
    from .catalog import encode_path
    from .indexer import _under
    from .store import IndexWriter

    directory = _index_dir(index)
    recorded = _recorded_meta(directory)
    if not recorded:
        from .errors import IndexMissing

        raise IndexMissing(f"No index at {directory} yet; nothing to remove.")
    bundle = Bundle.load(model or Path(recorded["bundle_path"]))
    with IndexWriter(directory, bundle, precision=recorded.get("precision", "fp32")) as writer:
        targets = [encode_path(p) for p in paths]
        doomed = [p for p in writer.catalog.states() if _under(p, targets)]
        removed = writer.catalog.delete_paths(doomed)
        generation = writer.publish()
    if as_json:
        emit_json({"removed": removed, "generation": generation})
    else:
        typer.echo(f"removed {removed} file(s) (generation {generation})")


# ---------------------------------------------------------------------------------------------- verify
@app.command(help="Check the bundle's hashes, the catalog, the index file and which providers really start.")
def verify(index: IndexOpt = None, model: ModelOpt = None, as_json: JsonOpt = False) -> None:
    from .doctor import check_bundle, check_index, check_providers
    from .locations import default_bundle_dir

    directory = _index_dir(index)
    bundle_root = model or Path(_recorded_meta(directory).get("bundle_path") or default_bundle_dir())
    checks = check_bundle(bundle_root) + check_index(directory) + check_providers(bundle_root)
    if as_json:
        emit_json({"ok": all(c.ok for c in checks), "checks": [c.__dict__ for c in checks]})
    else:
        for check in checks:
            mark = "[green]ok[/]  " if check.ok else "[red]FAIL[/]"
            err.print(f"{mark} {check.name:<14} {check.detail}")
    if not all(c.ok for c in checks):
        raise typer.Exit(8)


# ---------------------------------------------------------------------------------------------- main
def _exit_now(code: int) -> None:
    """Exit without interpreter teardown (~0.2 s of onnxruntime and module cleanup on a cold query).

    Safe because every command has closed its catalog, lock and files before returning.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    warnings.filterwarnings("ignore", module="PIL")
    try:
        code = app(standalone_mode=False)
        _exit_now(code if isinstance(code, int) else 0)
    except EdgeSearchError as exc:
        err.print(f"[bold red]edge-search:[/] {exc}")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("edge-search: interrupted. Everything committed so far is kept; run the same command to resume.")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
