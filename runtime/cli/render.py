"""Everything the CLI shows: text for people (stderr for chatter, stdout for answers), JSON for programs."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from edge_search.runtime.files import cache_dir, write_atomically
from edge_search.runtime.jobs.walk import LEADS_OUT
from edge_search.runtime.model import video
from edge_search.runtime.model.tuning import Trial
from edge_search.runtime.model.video import format_time
from edge_search.runtime.shell import (  # one stderr console, markup off: messages hold paths and "[extras]"
    err,
    say,
    visible,
)

CUDA_HINT = (
    "Set EDGE_SEARCH_DEVICE=cpu (or pass --device cpu), or install the `cpu` extra instead of `gpu`, "
    "to skip the CUDA check; -v shows this note again."
)


def human(path: str) -> str:
    """A path for a person: bytes that are not UTF-8 as \\xNN, control and bidi characters as ⟨U+XXXX⟩ (exact in
    --json, -0 and piped -f output instead)."""
    return visible(os.fsencode(path).decode("utf-8", "backslashreplace"))


def plural(count: int, word: str) -> str:
    """'1 video', '2 videos'."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def human_size(size: float) -> str:
    """1234567 -> "1.2 MB" (decimal units, as file managers show them)."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def info_lines(data: dict[str, Any]) -> list[tuple[str, str]]:
    """`info` for a person: labelled lines, sizes in units, the bundle named as the bundle (its source
    checkpoint beside it)."""
    failed = data["failed"]
    roots = ", ".join(
        human(r["path"])
        + (f" (excluding {', '.join(r['excludes'])})" if r["excludes"] else "")
        + (" (hidden included)" if r["include_hidden"] else "")
        + (" (symlinks out followed)" if r.get("follow_links") else "")
        for r in data["roots"]
    )
    identity = (data["bundle_identity"] or "")[:12]
    merging = data.get("token_merging")
    return [
        ("index", human(data["index"])),
        (
            "files",
            plural(data["count"] - (data.get("videos") or 0), "photo")
            + (f" · {plural(data['videos'], 'video')} ({data['frames']} frames embedded)" if data.get("videos") else "")
            + (f" · {failed} failed (edge-search info --failed)" if failed else ""),
        ),
        ("bundle", f"{data['bundle_path'] or 'none yet'}" + (f" (identity {identity}…)" if identity else "")),
        (
            "model",
            f"made from {data['model'] or '?'} · {data['dim'] or '?'}-d"
            + (
                f" · token merging {merging['r']} per block ({merging['tokens_last_block']} of {merging['tokens']} "
                "tokens in the last block)"
                if merging
                else ""
            )
            + (" · RANDOM weights: results mean nothing" if data["random_weights"] else ""),
        ),
        ("precision", f"{data['precision'] or '?'} (the last run's)"),
        (
            "vector index",
            f"{data['vector_dtype']} · connectivity {data['connectivity']} · expansion {data['expansion_search']} · "
            f"generation {data['generation']} ({data['index_file'] or 'none'}, {data['index_count']} vectors)",
        ),
        ("last indexed", data["last_indexed_at"] or "never"),
        ("folders", roots or "none"),
        ("size on disk", human_size(data["size_bytes"])),
        *((f"auto: {job}", engine) for job, engine in data.get("engines", {}).items()),
        *((f"measured: {t['engine']}", Trial.from_dict(t).summary()) for t in data.get("engine_trials", [])),
    ]


def emit_paths(paths: Iterable[str], *, nul: bool) -> None:
    """Each path's exact bytes ended by a NUL (`nul`, as `find -print0` writes them) or a newline: the
    machine-readable forms, nothing stripped or escaped. Only on a terminal are the lines shown as `human` writes
    them, so that a name cannot drive the terminal it is printed on."""
    if not nul and sys.stdout.isatty():
        for path in paths:
            echo(human(path))
        return
    out = sys.stdout.buffer
    for path in paths:
        out.write(os.fsencode(path) + (b"\0" if nul else b"\n"))
    out.flush()


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=True, allow_nan=False) + "\n")  # strict JSON: no NaN, no Infinity
    sys.stdout.flush()


def warn(message: str) -> None:
    say("warning:", "yellow", message)


def model_notes(model, scope: Path, verbose: bool) -> None:
    """Provider notes (CUDA fell through to the CPU) once per index, then only with -v; the random-weights
    warning always (results are meaningless, which nobody should miss)."""
    if model.random_weights:
        warn(f"the bundle at {model.bundle.root} has RANDOM weights (speed tests only): results are meaningless.")
    for note in model.notes:
        if verbose or _first_time(f"{scope.resolve()}|{note}"):
            say("note:", "yellow", f"{note} {CUDA_HINT}")


def _first_time(key: str) -> bool:
    """True once per key on this machine (remembered in the user cache; if that cannot be written, always)."""
    path = cache_dir() / "notes-shown.json"
    try:
        shown = set(json.loads(path.read_text()))
    except (OSError, ValueError):
        shown = set()
    if key in shown:
        return False
    try:
        write_atomically(path, json.dumps(sorted(shown | {key})).encode())
    except OSError:
        pass
    return True


def short(path: str, width: int = 40) -> str:
    """A path shortened from the left, so the file name survives."""
    text = human(path)
    return text if len(text) <= width else "…" + text[-(width - 1) :]


class Progress:
    """Per-file progress on a terminal: bar, done/total, rate, ETA and the current file. Silent when piped."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar: Any = None  # a rich Progress, imported only on a terminal
        self._task = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("indexing"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("[cyan]{task.fields[rate]}"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[current]}", markup=False),
                console=err,
                transient=True,
            )
            self._bar.__enter__()
        return self

    def start(self, total: int) -> None:
        if self._bar is not None:
            self._task = self._bar.add_task("indexing", total=total, rate="", current="")
            self._t0 = time.perf_counter()
            self._done = 0

    def file(self, path: str, _outcome: str) -> None:
        if self._bar is not None and self._task is not None:
            self._done += 1
            rate = self._done / max(time.perf_counter() - self._t0, 1e-9)
            self._bar.update(self._task, advance=1, rate=f"{rate:5.1f} img/s", current=short(path, 32))

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def echo(text: str = "") -> None:
    typer.echo(text)


# ------------------------------------------------------------------------------------ index and query
def index_announcement(directory: Path, opened: Any, ray: str | None) -> None:
    """What an index run is about to do, on stderr (before its progress)."""
    where = f"the Ray cluster at {ray}" if ray else opened.provider
    err.print(
        f"Indexing into {directory} with the bundle at {opened.bundle.root} (from "
        f"{opened.bundle.manifest.model_id}) · {where} {opened.precision}"
        + ("" if ray or not opened.why else f" ({opened.why})")
    )


def _skipped(problems: list[tuple[str, str]]) -> str:
    """' · skipped 131 (131 symlinks leading out: --follow-links includes them)': what the lines above listed."""
    if not problems:
        return ""
    links = sum(LEADS_OUT in reason for _, reason in problems)
    why = f" ({links} symlink(s) leading out of the indexed folders: --follow-links includes them)" if links else ""
    return f" · skipped {len(problems)}{why}"


def index_report(report: Any, opened: Any, directory: Path, as_json: bool) -> None:
    """An index run's outcome: JSON on stdout, or the skipped and failed files then one summary line."""
    if as_json:
        emit_json(
            {**report.as_dict(), "provider": opened.provider, "precision": opened.precision, "index": str(directory)}
        )
        return
    earlier = report.dated - report.added - report.updated - report.moved  # dates of files this run did not add
    for path, reason in report.problems:
        say("skipped:", "yellow", f"{human(path)}: {reason}")
    for path, reason in report.failed:
        say("failed:", "red", f"{human(path)}: {reason}")
    echo(
        f"added {report.added} · updated {report.updated} · moved {report.moved} · removed {report.removed}"
        f" · unchanged {report.unchanged} · failed {len(report.failed)} — {report.count} files indexed"
        f" (generation {report.generation}, {report.seconds:.1f}s, {report.images_per_s:.1f} img/s)"
        + (f" · embedded by {report.cluster}" if report.cluster else "")
        + (f" · {report.frames} video frames embedded" if report.frames else "")
        + (f" · pixel signatures made for {report.signed} (nothing re-embedded)" if report.signed else "")
        + (
            f" · dates taken recorded for {earlier} files indexed without one (nothing re-embedded)"
            if earlier > 0
            else ""
        )
        + _skipped(report.problems)
    )
    if report.videos_skipped:
        say(
            "note:",
            "yellow",
            f"{report.videos_skipped} video file(s) were left out: indexing videos needs PyAV ({video.INSTALL_HINT}).",
        )
    if report.undated:
        shown = ", ".join(human(path) for path in report.undated[:3]) + (" …" if len(report.undated) > 3 else "")
        say(
            "note:",
            "yellow",
            f"{len(report.undated)} file(s) have no plausible date (neither EXIF nor a file time between 1826 and "
            f"today): {shown}. They are indexed with their date unknown; --after/--before leave them out.",
        )
    if report.known_failures:
        say(
            "note:",
            "yellow",
            f"{report.known_failures} unchanged file(s) could not be read before either (`edge-search info "
            "--failed` lists them; they are tried again when they change).",
        )


@dataclass(frozen=True)
class Answer:
    """How a search's results are to be shown: what was asked, in which form, and how long it took."""

    query: str | list[str] | None
    text: str | list[str] | None
    as_json: bool
    paths_only: bool
    print0: bool
    latency_ms: float


def moments(hit: Any) -> str:
    """' @ 01:23' for a video (its other matching moments after it), '' for a photo."""
    if hit.at is None:
        return ""
    others = [format_time(at) for at, _ in hit.moments[1:]]
    return f" @ {format_time(hit.at)}" + (f"  (also {', '.join(others)})" if others else "")


def search_results(answer: Answer, result: Any, montage: Path | None = None) -> None:
    """This box's results: JSON, bare paths, or ranked lines with a summary on stderr."""
    if answer.as_json:
        emit_json(
            {
                "query": answer.query,
                "text": answer.text,
                "results": [hit.as_dict() for hit in result.hits],
                "provider": result.provider,
                "precision": result.precision,
                "latency_ms": round(answer.latency_ms, 1),
                "montage": os.fspath(montage) if montage else None,
            }
        )
        return
    if answer.paths_only:
        emit_paths((hit.path for hit in result.hits), nul=answer.print0)
        return
    if not result.hits:
        echo(
            "No results: the index is empty, or nothing matched the filters given (--min-score, --under, "
            "--after / --before, --type)."
        )
    for hit in result.hits:
        echo(f"{hit.rank:>3}  {hit.score:.4f}  {human(hit.path)}{moments(hit)}")
    err.print(
        f"{len(result.hits)} result(s) · {result.provider} {result.precision} · {answer.latency_ms:.0f} ms"
        + (f" · montage: {montage}" if montage else "")
    )


def fleet_results(answer: Answer, result: Any, uri: str) -> None:
    """Results from every box of a Milvus collection: the same forms, each hit naming its box."""
    if answer.as_json:
        emit_json(
            {
                "query": answer.query,
                "text": answer.text,
                "milvus": uri,
                "collection": result.collection,
                "results": [h.as_dict() for h in result.hits],
                "provider": result.provider,
                "precision": result.precision,
                "latency_ms": round(answer.latency_ms, 1),
            }
        )
        return
    if answer.paths_only:
        emit_paths((f"{hit.box}:{hit.path}" for hit in result.hits), nul=answer.print0)
        return
    for hit in result.hits:
        echo(f"{hit.rank:>3}  {hit.score:.4f}  {hit.box}  {human(hit.path)}")
    if not result.hits:
        echo("No results (nothing synced to this collection yet, or nothing scored above --min-score).")
    err.print(
        f"{len(result.hits)} result(s) from {result.collection} · {result.provider} {result.precision} · "
        f"{answer.latency_ms:.0f} ms"
    )
