"""`export-model`: the Typer front end of the export pipeline; the only place that prints or exits.

Heavy imports (torch, transformers, onnx) happen inside the command, so `--help`, `--version` and a
search-only install's "install the export extra" message work without them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from edge_search.runtime import shell
from edge_search.runtime.locations import MODEL_ENV, default_bundle_dir

from .defaults import DEFAULT_MODEL, DEFAULT_OPSET
from .errors import (
    ExportError,
    ExportStorageError,
    ExportUsageError,
    ParityError,
    SourceError,
)

# Exit codes of `export-model`, documented in docs/export.md: the only place they are numbered.
EXIT_CODES: dict[type, int] = {ExportUsageError: 2, SourceError: 3, ParityError: 4, ExportStorageError: 5}
EXPORT_PACKAGES = ("torch", "transformers", "onnx")

app = typer.Typer(add_completion=True, pretty_exceptions_enable=False, rich_markup_mode=None)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def _step_reporter(console: Console):
    @contextlib.contextmanager
    def step(name: str) -> Iterator[None]:
        started = time.perf_counter()
        if console.is_terminal:
            with console.status(f"{name}…"):
                yield
            console.print(f"[green]✓[/] {name:<8} {time.perf_counter() - started:6.1f}s")
        else:
            yield

    return step


def _version(value: bool) -> None:
    if value:
        from edge_search.runtime import __version__

        typer.echo(f"export-model (edge-search) {__version__}")
        raise typer.Exit()


def _import_pipeline():
    """The export pipeline, or a SourceError naming the extra to install where its packages are missing."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:  # imported lazily by the steps that fuse and gate
        raise ExportUsageError(
            "export-model needs onnxruntime (its parity gates run every graph), which this install lacks: "
            "install the export extra together with cpu or gpu, e.g. pip install 'edge-search[cpu,export]'."
        )
    try:
        from .pipeline import export_bundle
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in EXPORT_PACKAGES:
            raise
        raise ExportUsageError(
            f"export-model needs {missing}, which this install lacks: it is a search-only install. On the "
            "workstation that exports models, install the export extra: pip install torch==2.13.0 "
            "'edge-search[export]' (any torch build that suits it). A device only needs a bundle copied over."
        ) from None
    return export_bundle


def _bundle_model(out: Path) -> tuple[str, bool, int] | None:
    """(model id, random weights, tokens merged per block) of the complete bundle in `out`, or None."""
    from edge_search.runtime.errors import BundleError
    from edge_search.runtime.model.bundle import Bundle

    try:
        manifest = Bundle.load(out).manifest
    except BundleError:
        return None
    return manifest.model_id, manifest.random_weights, (manifest.token_merging or {}).get("r", 0)


def _holds_bundle_of(out: Path, model: str, random_weights: bool, merge_tokens: int) -> bool:
    """Whether `out` holds a complete bundle exported from `model` as asked (same weights kind, same merging)."""
    found = _bundle_model(out)
    return found is not None and _is_model(found[0], model) and found[1:] == (random_weights, merge_tokens)


def _is_model(recorded: str, model: str) -> bool:
    """Whether a manifest's model id names `model`: a hub id as given, a local checkpoint by its resolved path."""
    return recorded in (model, str(Path(model).expanduser().resolve()))


def _refuse_another_models_bundle(out: Path, model: str, random_weights: bool, merge_tokens: int) -> None:
    """Without --force, a bundle of another model (or the same one exported otherwise) in --out is named rather
    than called "not empty"."""
    found = _bundle_model(out)
    if found is not None and not _holds_bundle_of(out, model, random_weights, merge_tokens):
        weights = " (random weights)" if found[1] else ""
        merged = f" merging {found[2]} tokens per block" if found[2] else ""
        asked = f"{model}" + (f" merging {merge_tokens} tokens per block" if merge_tokens else "")
        raise ExportUsageError(
            f"--out {out} holds the bundle of {found[0]}{weights}{merged}, not of {asked}. Pass --force to replace "
            "it (an index built with it then has to be rebuilt), or choose another --out."
        )


@app.command(
    help="Export a Hugging Face ViT-style encoder to a verified ONNX bundle (fp32, fp16, int8 + manifest.json)."
)
def export_model(
    model: Annotated[str, typer.Option(help="Hub id or local checkpoint directory.")] = DEFAULT_MODEL,
    out: Annotated[
        Optional[Path],
        typer.Option(help="Bundle directory to create [default: edge-search's model location].", envvar=MODEL_ENV),
    ] = None,
    revision: Annotated[Optional[str], typer.Option(help="Hub revision (branch, tag or commit).")] = None,
    precision: Annotated[
        Optional[list[str]],
        typer.Option(help="Graphs to write; repeat for several. [default: fp32, fp16, int8, int8-static]"),
    ] = None,
    calibration_photos: Annotated[
        Optional[Path],
        typer.Option(
            help="A folder of photos like the ones you will search (up to 64 are used; with fewer than 8, the "
            "photos shipped with edge-search are added) to calibrate the int8-static graph for OpenVINO on "
            "[default: the photos shipped with edge-search].",
        ),
    ] = None,
    opset: Annotated[int, typer.Option(min=13, help="ONNX opset.")] = DEFAULT_OPSET,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing, non-empty --out.")] = False,
    keep_existing: Annotated[
        bool,
        typer.Option(
            "--keep-existing",
            help="If --out already holds a valid bundle of this model, keep it and succeed (makes set-up "
            "scripts safe to rerun).",
        ),
    ] = False,
    random_weights: Annotated[
        bool,
        typer.Option(
            "--random-weights", help="Build the architecture with random weights (benchmarks, smoke runs only)."
        ),
    ] = False,
    require: Annotated[
        Optional[list[str]],
        typer.Option(
            help="A precision that must pass its parity gate, or nothing is written (exit 4); repeat for "
            "several. [default: none: a precision that fails is left out, the others are written]"
        ),
    ] = None,
    dupe_threshold: Annotated[
        Optional[float],
        typer.Option(
            min=0.01,
            max=1.0,
            help="Cosine at or above which `edge-search dupes` calls two images near-duplicates, recorded in "
            "the manifest [default: per model family].",
        ),
    ] = None,
    merge_tokens: Annotated[
        int,
        typer.Option(
            min=0,
            help="Token merging (ToMe): every block but the last merges this many pairs of similar tokens, so "
            "later blocks run on fewer (speed and search quality per setting: docs/export.md). A different "
            "embedding: an index built with another setting has to be built again. [default: 0, no merging]",
            show_default=False,
        ),
    ] = 0,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    out = out or default_bundle_dir()
    if keep_existing and not force and _holds_bundle_of(out, model, random_weights, merge_tokens):
        typer.echo(f"Kept the existing bundle at {out} ({model}); --force replaces it.")
        return
    if not force:
        _refuse_another_models_bundle(out, model, random_weights, merge_tokens)
    export_bundle = _import_pipeline()
    manifest = export_bundle(
        model=model,
        out=out,
        revision=revision,
        precisions=tuple(precision) if precision else None,
        calibration_photos=calibration_photos,
        opset=opset,
        force=force,
        random_weights=random_weights,
        dupe_threshold=dupe_threshold,
        require=tuple(require or ()),
        merge_tokens=merge_tokens,
        step=_step_reporter(err),
    )
    typer.echo(f"Wrote {out} ({manifest.architecture}, dim {manifest.embedding_dim}, opset {manifest.opset})")
    if manifest.token_merging:
        merging = manifest.token_merging
        typer.echo(
            f"  token merging: {merging['r']} per block, {merging['tokens_last_block']} of {merging['tokens']} "
            f"tokens in the last block; cosine to the unmerged model min {merging['against_unmerged']['min_cosine']}"
            f", mean {merging['against_unmerged']['mean_cosine']}"
        )
    for spec in manifest.files.values():
        fused = ", ".join(f"{op}×{n}" for op, n in spec.fused_ops.items()) or "none"
        typer.echo(
            f"  {spec.path:<22} {spec.bytes / 1e6:8.1f} MB  parity min cos {spec.parity['min_cosine']:.6f} "
            f"(≥ {spec.parity['threshold']})  fused: {fused}"
        )
        if "calibration_source" in spec.quantization:
            q = spec.quantization
            typer.echo(
                f"  {'':<22} calibrated on {q['calibration_photos']} photos ({q['calibration_inputs']} inputs "
                f"with their crops): {q['calibration_source']}"
            )
    for name, figures in manifest.rejected.items():
        instead = {
            "int8": "on a CPU, `--precision auto` uses fp32 instead",
            "fp16": "on a GPU, `--precision auto` uses fp32 instead",
            "int8-static": "`--device auto` keeps onnxruntime's int8, `--device openvino` runs fp32",
        }.get(name, "")
        shell.say(
            "warning:",
            "yellow",
            f"the {name} graph failed its parity gate (min cosine {figures['min_cosine']:.4f} against "
            f"PyTorch, below {figures['threshold']}) and was left out; "
            f"{instead or 'the other precisions were written'}. "
            f"--require {name} makes this an error.",
        )
    if manifest.random_weights:
        shell.say(
            "warning:",
            "yellow",
            "this bundle has RANDOM weights: good for speed tests only, its search results are meaningless.",
        )


def main() -> None:
    shell.run(  # no arguments is fine here: it exports the default model
        app,
        prog="export-model",
        table=EXIT_CODES,
        base_error=ExportError,
        brief=None,
        interrupted="Nothing was written to --out.",
    )
