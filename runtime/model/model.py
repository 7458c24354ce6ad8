"""`Model`: a bundle with its onnxruntime session and preprocessing, opened once and used for many images.

The one object the indexer, queries, the service and Ray workers embed with; it knows nothing of indexes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge_search.runtime.locations import default_bundle_dir
from edge_search.runtime.model import selfcheck
from edge_search.runtime.model.bundle import Bundle
from edge_search.runtime.model.embedder import Embedder, EmbedResult
from edge_search.runtime.model.preprocess import Preprocessor
from edge_search.runtime.model.session import EmbeddingSession, open_session
from edge_search.runtime.options import ImageSource, ModelOptions


@dataclass
class Model:
    """A bundle with its onnxruntime session and preprocessing: open once, embed many times."""

    bundle: Bundle
    session: EmbeddingSession
    preprocessor: Preprocessor
    embedder: Embedder
    notes: list[str] = field(default_factory=list)  # e.g. "CUDA cannot start (...); using the CPU."
    options: ModelOptions = field(default_factory=ModelOptions)  # as asked for; `provider`/`precision`: as started
    _text: Any = None  # the text tower, opened on the first text query

    @property
    def has_text(self) -> bool:
        """Whether the bundle can embed words (a CLIP bundle with its text tower)."""
        return self.bundle.manifest.text is not None

    def embed_text(self, text: str) -> np.ndarray:
        """The unit embedding of `text`, in the same space as the images' (CLIP bundles only; UsageError otherwise)."""
        if self._text is None:
            from edge_search.runtime.model.text import TextEncoder

            self._text = TextEncoder.open(self.bundle, precision=self.precision, threads=self.threads)
        return self._text.embed([text])[0]

    @classmethod
    def open(
        cls,
        bundle: Bundle | str | os.PathLike[str] | None = None,
        options: ModelOptions | None = None,
        *,
        session: tuple[EmbeddingSession, list[str]] | None = None,
    ) -> Model:
        """`bundle`: a loaded Bundle, a bundle directory, or None for export-model's default location.
        `session`: (session, notes) already opened for this bundle with these options (the CLI's prewarm)."""
        options = options or ModelOptions()
        if not isinstance(bundle, Bundle):
            bundle = Bundle.load(Path(bundle) if bundle is not None else default_bundle_dir())
        session = session or open_session(
            bundle,
            device=options.device,
            precision=options.precision,
            threads=options.threads,
            cuda=options.cuda,
            openvino=options.openvino,
            one_shot=options.one_shot,
        )
        selfcheck.check_once(session[0], bundle)  # a swapped graph or a wrong embedding_dim: before any embedding
        preprocessor = cls.preprocessor_for(bundle, options)
        embedder = Embedder(session[0], preprocessor, batch_size=options.batch_size, workers=options.threads)
        return cls(bundle, session[0], preprocessor, embedder, session[1], options)

    @staticmethod
    def preprocessor_for(bundle: Bundle, options: ModelOptions | None = None) -> Preprocessor:
        """The decoding and preprocessing `open` gives a model with these options (needs no session, so
        the CLI can decode a query image while the session is still being built)."""
        options = options or ModelOptions()
        return Preprocessor.for_options(
            bundle.manifest,
            jpeg_draft=options.jpeg_draft,
            max_megapixels=options.max_megapixels,
            threads=options.threads,
        )

    @property
    def threads(self) -> int | None:
        return self.options.threads

    @property
    def provider(self) -> str:
        return self.session.provider

    @property
    def precision(self) -> str:
        return self.session.precision

    @property
    def why(self) -> str:
        """Why this engine and precision (`auto` follows the job: see providers.resolve)."""
        return self.session.why

    @property
    def random_weights(self) -> bool:
        return self.bundle.manifest.random_weights

    def embed_paths(
        self, paths: Iterable[str | os.PathLike[str]], *, stop: threading.Event | None = None
    ) -> Iterator[EmbedResult]:
        """One result per path, in order: a unit vector, or the reason that file could not be read."""
        return self.embedder.embed(paths, stop=stop)

    def pixels(self, image: ImageSource, label: str | None = None) -> np.ndarray:
        """Decode and preprocess one image (path, encoded bytes or a PIL image); ImageDecodeError if it cannot be."""
        if isinstance(image, Image.Image):
            return self.preprocessor.from_image(image)
        if isinstance(image, bytes):
            return self.preprocessor.load_bytes(image, label or "<bytes>")
        return self.preprocessor.load(os.fspath(image))

    def embed_image(self, image: ImageSource) -> np.ndarray:
        """The unit embedding of one image."""
        return self.embedder.embed_pixels(self.pixels(image)[None])[0]
