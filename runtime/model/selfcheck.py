"""A graph computes what was exported: its embeddings of two fixed inputs, recorded in the manifest at export,
are checked on this machine before the graph embeds anything.

A sha256 in the manifest only proves the file is the one the manifest names; a graph swapped together with its
hash, or a manifest whose `embedding_dim` was edited, passes that. Running the graph on fixed inputs catches both:
the output must have the manifest's dimension, and (bundles exported with references) point the same way as the
recorded embeddings within the precision's tolerance. `Model.open` checks each graph state once per machine and
engine (remembered beside the verified-file cache); `edge-search verify` checks every graph every time.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from edge_search.runtime.errors import BundleError
from edge_search.runtime.files import VerifiedCache
from edge_search.runtime.model.bundle import Bundle, ModelFile
from edge_search.runtime.model.providers import TENSORRT, TENSORRT_PARITY


class EmbeddingSession(Protocol):
    """What a check needs of a session (session.EmbeddingSession has it; session.py checks a TensorRT engine as it
    opens, so this module cannot import that one)."""

    @property
    def precision(self) -> str: ...
    @property
    def provider(self) -> str: ...

    def run(self, pixels: np.ndarray) -> np.ndarray: ...


# The lowest cosine to the recorded reference a healthy graph gives on another machine or engine: fp32 differs
# only by summation order; fp16 by fp16 arithmetic on another device; int8 by the integer kernels of another CPU
# (AVX2 without VNNI saturates where VNNI does not). A swapped graph lands far below (0.5 in the probe).
TOLERANCE = {"fp32": 0.9999, "fp16": 0.995, "int8": 0.98, "int8-static": 0.98}
REFERENCE_IMAGES = 2


def reference_pixels(height: int, width: int, count: int = REFERENCE_IMAGES) -> np.ndarray:
    """Fixed, photo-like model inputs (smooth colour gradients and waves in the normalised range), computed the same
    way everywhere with no file, no decoder and no random generator."""
    y, x = np.meshgrid(np.linspace(0.0, 1.0, height), np.linspace(0.0, 1.0, width), indexing="ij")
    images = []
    for i in range(count):
        channels = [
            np.sin((3 + i + c) * np.pi * x + c) * np.cos((2 + 2 * i) * np.pi * y) + (x - y) * (c - 1) for c in range(3)
        ]
        images.append(np.stack(channels))
    return np.clip(np.stack(images), -2.0, 2.0).astype(np.float32)


def reference_embeddings(run, height: int, width: int) -> list[list[float]]:
    """What export-model records: the graph's unit embeddings of `reference_pixels` (`run`: pixels -> raw)."""
    out = np.asarray(run(reference_pixels(height, width)), dtype=np.float64)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return [[round(float(v), 7) for v in row] for row in out]


def check(session: EmbeddingSession, bundle: Bundle, spec: ModelFile) -> float | None:
    """BundleError unless the graph behind `session` gives the manifest's dimension and its recorded references
    (to the precision's tolerance; a TensorRT engine, fp16 arithmetic on the fp32 graph, to its own); the lowest
    cosine to them (None: the bundle records none)."""
    height, width = bundle.manifest.preprocess.input_hw()
    out = np.asarray(session.run(reference_pixels(height, width)), dtype=np.float64)
    dim = bundle.manifest.embedding_dim
    if out.ndim != 2 or out.shape[1] != dim:
        raise BundleError(
            f"The {spec.precision} graph of the bundle at {bundle.root} gives embeddings of shape {out.shape[1:]}, "
            f"but its manifest says {dim} dimensions: the manifest or the graph was changed. Re-export or re-copy "
            "the bundle; nothing was written with it."
        )
    if not spec.reference:
        return None
    recorded = np.asarray(spec.reference, dtype=np.float64)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    lowest = float((out * recorded).sum(axis=1).min())
    tolerance = TENSORRT_PARITY if session.provider == TENSORRT else TOLERANCE.get(spec.precision, 0.98)
    if lowest < tolerance:
        raise BundleError(
            f"The {spec.precision} graph of the bundle at {bundle.root} does not compute what was exported: on "
            f"{session.provider} its embeddings of the reference inputs are at cosine {lowest:.4f} to the recorded "
            f"ones (at least {tolerance} expected). The graph was replaced or damaged; re-export or re-copy the bundle."
        )
    return lowest


def check_once(session: EmbeddingSession, bundle: Bundle, cache: VerifiedCache | None = None) -> None:
    """`check` on the first load of this graph file state with this engine on this machine; remembered after."""
    spec = bundle.manifest.files.get(session.precision)
    if spec is None:
        return
    path = bundle.root / spec.path
    try:
        stat = path.stat()
    except OSError:
        return  # the session is open already: a graph that vanished since is the next load's problem
    cache = cache or VerifiedCache(name="checked-graphs.json")
    stamp = f"{spec.sha256}|{bundle.manifest.embedding_dim}|{session.provider}|{len(spec.reference)}"
    if cache.known_good(path, stat, stamp):
        return
    check(session, bundle, spec)
    cache.remember(path, stat, stamp)
