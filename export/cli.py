"""`export-model`: the Typer front end of the export pipeline; the only place that prints or exits."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from edge_search.runtime.bundle import PRECISIONS
from edge_search.runtime.locations import MODEL_ENV, default_bundle_dir

from .errors import ExportError
from .onnx_export import DEFAULT_OPSET
from .source import DEFAULT_MODEL

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
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


@app.command(help="Export a Hugging Face ViT-style encoder to a verified ONNX bundle (fp32, fp16, int8 + manifest.json).")
def export_model(
    model: Annotated[str, typer.Option(help="Hub id or local checkpoint directory.")] = DEFAULT_MODEL,
    out: Annotated[
        Optional[Path], typer.Option(help="Bundle directory to create [default: edge-search's model location].", envvar=MODEL_ENV)
    ] = None,
    revision: Annotated[Optional[str], typer.Option(help="Hub revision (branch, tag or commit).")] = None,
    precision: Annotated[
        Optional[list[str]], typer.Option(help="Graphs to write; repeat for several. [default: fp32, fp16, int8]")
    ] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = DEFAULT_OPSET,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing, non-empty --out.")] = False,
    random_weights: Annotated[
        bool, typer.Option("--random-weights", help="Build the architecture with random weights (benchmarks, smoke runs only).")
    ] = False,
) -> None:
    from .pipeline import export_bundle

    out = out or default_bundle_dir()
    try:
        manifest = export_bundle(
            model=model, out=out, revision=revision, precisions=tuple(precision or PRECISIONS), opset=opset,
            force=force, random_weights=random_weights, step=_step_reporter(err),
        )
    except ExportError as exc:
        err.print(f"[bold red]export-model:[/] {exc}", highlight=False)
        raise typer.Exit(exc.exit_code) from None
    typer.echo(f"Wrote {out} ({manifest.architecture}, dim {manifest.embedding_dim}, opset {manifest.opset})")
    for name, spec in manifest.files.items():
        fused = ", ".join(f"{op}×{n}" for op, n in spec.fused_ops.items()) or "none"
        typer.echo(
            f"  {spec.path:<17} {spec.bytes / 1e6:8.1f} MB  parity min cos {spec.parity['min_cosine']:.6f} "
            f"(≥ {spec.parity['threshold']})  fused: {fused}"
        )
    if manifest.random_weights:
        err.print("[yellow]warning:[/] this bundle has RANDOM weights: good for speed tests only, its search results are meaningless.")


def main() -> None:
    app()
