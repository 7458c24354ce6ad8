"""A cold `edge-search query` starts building its onnxruntime session before the rest of the program is imported.

Creating the session (~0.33 s for ViT-B/16 int8 on 2 cores) releases the GIL, so it can run while the main
thread imports the CLI and the library and parses the command line (~0.3 s). What is opened here is only a guess
from the command line and the environment, read with the same option table the CLI declares its options from
(`options.OPTION_SPECS`): the query command takes it only when the options it resolved itself are the same
(`take`), and otherwise opens its own. Anything unusual on the command line (CUDA settings, --help) and nothing
is guessed. The query images (the command line's words that are existing files) are decoded meanwhile on a third
thread, and used only when they are exactly the command's images and its preprocessor is the same
(`Prewarmed.pixels`).

Only light imports at module level: this runs before anything else in the process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_search.runtime.options import OPTION_SPECS, CudaOptions, ModelOptions, OpenVinoOptions

if TYPE_CHECKING:
    import numpy as np

    from edge_search.runtime.model.bundle import Bundle
    from edge_search.runtime.model.preprocess import Preprocessor
    from edge_search.runtime.model.session import EmbeddingSession

GUESSED = [OPTION_SPECS[name] for name in ("model", "index", "device", "precision", "threads")]
WORD_FLAGS = ("--text", "-t", "--unlike-text")  # words to embed: the model is needed whatever the photos
NOT_GUESSED = [OPTION_SPECS[name] for name in ("cuda_device_id", "cuda_mem_limit", "cuda_arena")]


@dataclass(frozen=True)
class Guess:
    model: str | None
    index: str | None
    device: str
    precision: str
    threads: int | None
    images: tuple[str, ...] = ()  # the words that name existing files: the query images, most likely


@dataclass
class Warming:
    """What the warming threads hand the main thread; each field is set once, by one thread."""

    guess: Guess
    loaded: threading.Event = field(default_factory=threading.Event)  # set once the bundle is loaded (or cannot be)
    bundle: Bundle | None = None
    session: tuple[EmbeddingSession, list[str]] | None = None
    decoding: threading.Thread | None = None
    pixels: tuple[tuple[str, ...], Preprocessor, np.ndarray] | None = None  # (images, decoded with, pixels)
    thread: threading.Thread | None = None


_started: Warming | None = None


def guess(argv: Sequence[str], environ: Mapping[str, str]) -> Guess | None:
    """The session options of `edge-search query ...`, or None where guessing would be unreliable."""
    refused = {spec.flag for spec in NOT_GUESSED} | {"--help"}
    if (
        not argv
        or argv[0] != "query"
        or any(a.split("=", 1)[0] in refused for a in argv)
        or any(spec.env in environ for spec in NOT_GUESSED)
    ):
        return None
    values: dict[str, str | None] = {spec.name: environ.get(spec.env) for spec in GUESSED}
    flags = {spec.flag: spec.name for spec in GUESSED}
    words = iter(argv[1:])
    for word in words:
        flag, equals, value = word.partition("=")
        if flag in flags:
            values[flags[flag]] = value if equals else next(words, None)
    try:
        threads = int(values["threads"]) if values["threads"] else None
    except ValueError:
        return None
    images = tuple(word for word in argv[1:] if not word.startswith("-") and os.path.isfile(word))
    return Guess(
        values["model"], values["index"], values["device"] or "auto", values["precision"] or "auto", threads, images
    )


def start(argv: Sequence[str]) -> None:
    """Begin opening the guessed session in a background thread (no-op when nothing can be guessed).

    Returns once the thread has imported what it needs: imports hold the GIL either way, and letting the
    thread's go first lets session creation (which releases it) start as early as possible and overlap the
    main thread's imports."""
    global _started
    hint = guess(argv, os.environ)
    if hint is None or _answered_from_the_index(hint, argv):
        return
    warming = Warming(hint)
    imported = threading.Event()
    warming.thread = threading.Thread(target=_open, args=(warming, imported), name="prewarm-session", daemon=True)
    warming.thread.start()
    imported.wait(timeout=5)
    _started = warming


def _answered_from_the_index(hint: Guess, argv: Sequence[str]) -> bool:
    """Whether the query photos are all in the index, with no words to embed: the command then answers from the
    stored embeddings (`jobs.known_photos`) and warming a model would only take CPU from it."""
    if not hint.images or any(word.split("=", 1)[0] in WORD_FLAGS for word in argv):
        return False
    from edge_search.runtime.jobs.known_photos import content_hash
    from edge_search.runtime.locations import default_index_dir
    from edge_search.runtime.store.catalog import holds_contents

    shas = [content_hash(image) for image in hint.images]
    index = Path(hint.index).expanduser() if hint.index else default_index_dir()
    return all(shas) and holds_contents(index, [sha for sha in shas if sha])


def drop() -> None:
    """Forget what was warmed (the query needs no model): its threads are daemons and end with the process."""
    global _started
    _started = None


def _open(warming: Warming, imported: threading.Event) -> None:
    """Only light imports here (bundle, session: numpy + onnxruntime): the main thread imports the rest."""
    try:
        try:
            import onnxruntime  # noqa: F401  (open_session imports it lazily: here, before the main thread goes on)

            from edge_search.runtime.model.bundle import Bundle
            from edge_search.runtime.model.session import open_session
        finally:
            imported.set()

        hint = warming.guess
        try:
            root = Path(hint.model).expanduser() if hint.model else _recorded_bundle(hint.index)
            if root is None:
                return
            bundle = warming.bundle = Bundle.load(root)
            if hint.images:  # decoded on another thread while this one builds the session
                warming.decoding = threading.Thread(target=_decode, args=(warming,), name="prewarm-decode", daemon=True)
                warming.decoding.start()
        finally:
            warming.loaded.set()
        warming.session = open_session(
            bundle, device=hint.device, precision=hint.precision, threads=hint.threads, one_shot=True
        )
    except Exception:  # noqa: BLE001 - a failed guess costs nothing: the command opens (and reports) it itself
        warming.session = None


def _decode(warming: Warming) -> None:
    """The guessed query images, decoded as a model with default decoding options would decode them."""
    try:
        import numpy as np

        from edge_search.runtime.model.preprocess import Preprocessor

        assert warming.bundle is not None
        images = warming.guess.images
        preprocessor = Preprocessor.for_options(warming.bundle.manifest, threads=warming.guess.threads)
        warming.pixels = (images, preprocessor, np.stack([preprocessor.load(image) for image in images]))
    except Exception:  # noqa: BLE001 - an unreadable image is decoded again, and reported, by the command
        pass


@dataclass
class Prewarmed:
    """The guessed bundle (loaded) and its session (perhaps still being built)."""

    bundle: Bundle
    _warming: Warming

    def session(self) -> tuple[EmbeddingSession, list[str]] | None:
        """(session, notes), waiting for it to be built; None if building it failed (the command then opens
        its own, which reports why)."""
        assert self._warming.thread is not None
        self._warming.thread.join()
        return self._warming.session

    def pixels(self, sources: Sequence[Any], preprocessor: Preprocessor) -> np.ndarray | None:
        """The query images decoded ahead, if `sources` are exactly the guessed files and `preprocessor` is the
        one they were decoded with; else None (the command decodes them itself)."""
        if self._warming.decoding is not None:  # started before `take` could return
            self._warming.decoding.join()
        early = self._warming.pixels
        if early is None or not all(isinstance(source, Path) for source in sources):
            return None
        images, used, pixels = early
        same_files = tuple(sources) == tuple(Path(image) for image in images)
        return pixels if same_files and used == preprocessor else None


def take(model: Path | None, index: Path | None, options: ModelOptions) -> Prewarmed | None:
    """The bundle and session opened ahead, when they are exactly what these options ask for, else None.
    Returns without waiting for the session, so the caller can do other work while it is built."""
    global _started
    warming, _started = _started, None
    if warming is None:
        return None
    hint = warming.guess
    same = (
        hint.device == options.device
        and hint.precision == options.precision
        and hint.threads == options.threads
        and options.cuda == CudaOptions()
        and options.openvino == OpenVinoOptions()
        and _same_path(hint.model, model)
        and _same_path(hint.index, index)
    )
    if not same:
        return None
    warming.loaded.wait()
    if warming.bundle is None:
        return None
    if model is None and warming.bundle.root.resolve() != _bundle_the_library_uses(index):
        return None
    return Prewarmed(warming.bundle, warming)


def _recorded_bundle(index: str | None) -> Path | None:
    """The bundle the index recorded, or None (no index yet: nothing to guess)."""
    from edge_search.runtime.locations import default_index_dir
    from edge_search.runtime.store.catalog import recorded_meta

    recorded = recorded_meta(Path(index).expanduser() if index else default_index_dir()).bundle_path
    return Path(recorded) if recorded else None


def _bundle_the_library_uses(index: Path | None) -> Path:
    from edge_search.runtime.library import Library

    return Library(index).bundle_path().expanduser().resolve()


def _same_path(guessed: str | None, used: Path | None) -> bool:
    if guessed is None or used is None:
        return guessed is None and used is None
    return Path(guessed).expanduser().resolve() == Path(used).expanduser().resolve()
