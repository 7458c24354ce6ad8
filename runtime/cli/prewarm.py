"""A cold `edge-search query` starts building its onnxruntime session before the rest of the program
is imported.

Creating the session (~0.33 s for ViT-B/16 int8 on 2 cores) releases the GIL, so it can run while the
main thread imports the CLI and the library and parses the command line (~0.3 s). What is opened here
is only a guess from the command line and the environment: the query command takes it only when the
options it resolved itself are the same (`take`), and otherwise opens its own. Anything unusual on
the command line (CUDA settings, --help) and nothing is guessed. The query images (the command line's
words that are existing files) are decoded meanwhile on a third thread, and used only when they are
exactly the command's images and its preprocessor is the same (`Prewarmed.pixels`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_search.runtime.options import ModelOptions

# option -> environment variable, for the options that decide which session a query opens
GUESSED = {
    "--model": "EDGE_SEARCH_MODEL",
    "--index": "EDGE_SEARCH_INDEX",
    "--device": "EDGE_SEARCH_DEVICE",
    "--precision": "EDGE_SEARCH_PRECISION",
    "--threads": "EDGE_SEARCH_THREADS",
}
NOT_GUESSED = (
    "--cuda-device-id",
    "--cuda-mem-limit",
    "--cuda-arena",
    "--help",
    "EDGE_SEARCH_CUDA_DEVICE",
    "EDGE_SEARCH_CUDA_MEM_LIMIT_MB",
    "EDGE_SEARCH_CUDA_ARENA",
)


@dataclass(frozen=True)
class Guess:
    model: str | None
    index: str | None
    device: str
    precision: str
    threads: int | None
    images: tuple[str, ...] = ()  # the words that name existing files: the query images, most likely


_started: tuple[Guess, threading.Thread, dict[str, Any]] | None = None


def guess(argv: list[str], environ: os._Environ | dict[str, str]) -> Guess | None:
    """The session options of `edge-search query ...`, or None where guessing would be unreliable."""
    if (
        not argv
        or argv[0] != "query"
        or any(a.split("=", 1)[0] in NOT_GUESSED for a in argv)
        or any(name in environ for name in NOT_GUESSED)
    ):
        return None
    values = {option: environ.get(variable) for option, variable in GUESSED.items()}
    words = iter(argv[1:])
    for word in words:
        name, equals, value = word.partition("=")
        if name in GUESSED:
            values[name] = value if equals else next(words, None)
    try:
        threads = int(values["--threads"]) if values["--threads"] else None
    except ValueError:
        return None
    images = tuple(word for word in argv[1:] if not word.startswith("-") and os.path.isfile(word))
    return Guess(
        values["--model"],
        values["--index"],
        values["--device"] or "auto",
        values["--precision"] or "auto",
        threads,
        images,
    )


def start(argv: list[str]) -> None:
    """Begin opening the guessed session in a background thread (no-op when nothing can be guessed).

    Returns once the thread has imported what it needs: imports hold the GIL either way, and letting
    the thread's go first lets session creation (which releases it) start as early as possible and
    overlap the main thread's imports."""
    global _started
    hint = guess(argv, os.environ)
    if hint is None:
        return
    box: dict[str, Any] = {"loaded": threading.Event()}  # set once the bundle is loaded (or cannot be)
    imported = threading.Event()
    thread = threading.Thread(target=_open, args=(hint, box, imported), name="prewarm-session", daemon=True)
    thread.start()
    imported.wait(timeout=5)
    _started = (hint, thread, box)


def _open(hint: Guess, box: dict[str, Any], imported: threading.Event) -> None:
    """Only light imports here (bundle, session: numpy + onnxruntime): the main thread imports the rest."""
    try:
        try:
            import onnxruntime  # noqa: F401  (open_session imports it lazily: here, before the main thread goes on)

            from edge_search.runtime.model.bundle import Bundle
            from edge_search.runtime.model.session import open_session
        finally:
            imported.set()

        try:
            root = Path(hint.model).expanduser() if hint.model else _bundle_of_index(hint.index)
            if root is None:
                return
            bundle = box["bundle"] = Bundle.load(root)
            if hint.images:  # decoded on another thread while this one builds the session
                box["decoding"] = threading.Thread(
                    target=_decode, args=(bundle, hint, box), name="prewarm-decode", daemon=True
                )
                box["decoding"].start()
        finally:
            box["loaded"].set()
        box["session"] = open_session(
            bundle, device=hint.device, precision=hint.precision, threads=hint.threads, one_shot=True
        )
    except Exception:  # noqa: BLE001 - a failed guess costs nothing: the command opens (and reports) it itself
        box.pop("session", None)


@dataclass
class Prewarmed:
    """The guessed bundle (loaded) and its session (perhaps still being built)."""

    bundle: Any
    _thread: threading.Thread
    _box: dict[str, Any]

    def session(self) -> tuple[Any, Any] | None:
        """(session, notes), waiting for it to be built; None if building it failed (the command then
        opens its own, which reports why)."""
        self._thread.join()
        return self._box.get("session")

    def pixels(self, sources: list, preprocessor: Any) -> Any:
        """The query images decoded ahead, if `sources` are exactly the guessed files and `preprocessor`
        is the one they were decoded with; else None (the command decodes them itself)."""
        if "decoding" in self._box:  # started before `take` could return
            self._box["decoding"].join()
        early = self._box.get("pixels")
        if early is None or not all(isinstance(source, Path) for source in sources):
            return None
        images, used, pixels = early
        return pixels if tuple(sources) == tuple(Path(image) for image in images) and used == preprocessor else None


def take(model: Path | None, index: Path | None, options: ModelOptions) -> Prewarmed | None:
    """The bundle and session opened ahead, when they are exactly what these options ask for, else None.
    Returns without waiting for the session, so the caller can do other work while it is built."""
    global _started
    if _started is None:
        return None
    hint, thread, box = _started
    _started = None
    from edge_search.runtime.options import CudaOptions

    same = (
        hint.device == options.device
        and hint.precision == options.precision
        and hint.threads == options.threads
        and options.cuda == CudaOptions()
        and _same_path(hint.model, model)
        and _same_path(hint.index, index)
    )
    if not same:
        return None
    box["loaded"].wait()
    if "bundle" not in box:
        return None
    if model is None and box["bundle"].root.resolve() != _recorded_bundle(index):
        return None
    return Prewarmed(box["bundle"], thread, box)


def _decode(bundle: Any, hint: Guess, box: dict[str, Any]) -> None:
    """The guessed query images, decoded as a model with default decoding options would decode them."""
    try:
        import numpy as np

        from edge_search.runtime.model.preprocess import Preprocessor

        preprocessor = Preprocessor.for_options(bundle.manifest, threads=hint.threads)
        box["pixels"] = (hint.images, preprocessor, np.stack([preprocessor.load(image) for image in hint.images]))
    except Exception:  # noqa: BLE001 - an unreadable image is decoded again, and reported, by the command
        pass


def _bundle_of_index(index: str | None) -> Path | None:
    """The bundle path the index recorded (`IndexMeta.bundle_path`), read with sqlite3 alone: the
    catalog module would import usearch. `take` checks the guess against the real answer."""
    import sqlite3

    from edge_search.runtime.locations import CATALOG_NAME, default_index_dir

    path = Path(index).expanduser() / CATALOG_NAME if index else default_index_dir() / CATALOG_NAME
    if not path.is_file():
        return None
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT value FROM meta WHERE key='bundle_path'").fetchone()
    return Path(row[0]) if row else None


def _same_path(guessed: str | None, used: Path | None) -> bool:
    if guessed is None or used is None:
        return guessed is None and used is None
    return Path(guessed).expanduser().resolve() == Path(used).expanduser().resolve()


def _recorded_bundle(index: Path | None) -> Path:
    from edge_search.runtime.library import Library

    return Library(index).bundle_path().expanduser().resolve()
