"""The bundle contract: `manifest.json` plus one ONNX graph per precision.

The exporter writes a `Manifest` through `Manifest.to_dict`; the runtime reads it back through
`Bundle.load`, so both halves agree on every field. Files are size-checked on every load and
sha256-checked once per (size, mtime) state, remembered in a small cache, so that a query does not
hash 300 MB each time while a truncated or tampered model is still refused before onnxruntime sees it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_search.runtime.errors import BundleError
from edge_search.runtime.files import VerifiedCache, sha256_file
from edge_search.runtime.options import GRAPH_PRECISIONS

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
TOKENIZER_NAME = "tokenizer.json"


# The duplicate threshold per model family (`dupes`), chosen on trained weights by `python -m benchmarks.dupes`
# (the trained DINOv2 ViT-S/14 fixture, 426 files: photos, wallpapers, flat/gradient/transparent pictures and 255
# planted copies): with the pixel check no threshold from 0.8 to 0.99 mixed two pictures; 0.9 is the highest
# whose recall of resized, re-encoded and mirrored copies (98/100/100%) is within a point of the best. ViT and
# DeiT share it: no trained checkpoint of theirs is reachable here, and with the pixel check deciding "same
# picture" the threshold only chooses the candidates. A bundle records its own (`export-model
# --dupe-threshold`); `--threshold` overrides.
FAMILY_THRESHOLDS = {"vit": 0.9, "deit": 0.9, "dinov2": 0.9}
FALLBACK_THRESHOLD = 0.9


def family_threshold(model_type: str | None) -> float:
    """The cosine above which two pictures count as duplicates for this family, when the bundle records none."""
    return FAMILY_THRESHOLDS.get((model_type or "").lower(), FALLBACK_THRESHOLD)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: list[Any]


@dataclass(frozen=True)
class ModelFile:
    """One ONNX graph of the bundle and what the exporter measured about it."""

    precision: str
    path: str
    sha256: str
    bytes: int
    input: TensorSpec
    output: TensorSpec
    fused_ops: dict[str, int] = field(default_factory=dict)
    parity: dict[str, float] = field(default_factory=dict)
    # int8: how it was quantized (weights and activations), as the exporter did it
    quantization: dict[str, Any] = field(default_factory=dict)
    # the graph's unit embeddings of `selfcheck.reference_pixels`, as the exporter ran it (image graphs)
    reference: list[list[float]] = field(default_factory=list)


@dataclass(frozen=True)
class TextTower:
    """A CLIP-style text encoder beside the image graphs: its graphs per precision (int64 token ids ->
    an embedding in the image embeddings' space) and the tokenizer that makes the ids."""

    files: dict[str, ModelFile]
    tokenizer: str  # tokenizer.json, read by the `tokenizers` library
    tokenizer_sha256: str
    context_length: int
    pad_id: int
    pad_token: str

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TextTower:
        files = {precision: _model_file(spec) for precision, spec in raw["files"].items()}
        return cls(**{**raw, "files": files})


def _model_file(spec: dict[str, Any]) -> ModelFile:
    return ModelFile(**{**spec, "input": TensorSpec(**spec["input"]), "output": TensorSpec(**spec["output"])})


def _plain_name(name: object) -> None:
    """A bundle's files are named without folders: a path that could lead out of the bundle is refused."""
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or os.path.isabs(name)
    ):
        raise BundleError(
            f"The bundle's manifest names the file {name!r}: a bundle's files are plain names inside its folder, "
            "so a path that could lead out of it is refused. Re-export or re-copy the bundle."
        )


@dataclass(frozen=True)
class PreprocessConfig:
    """The model's own image-processor settings, as the exporter read them."""

    processor_class: str
    do_convert_rgb: bool
    do_resize: bool
    size: dict[str, int]
    resample: int
    do_center_crop: bool
    crop_size: dict[str, int] | None
    do_rescale: bool
    rescale_factor: float
    do_normalize: bool
    image_mean: list[float]
    image_std: list[float]

    def input_hw(self) -> tuple[int, int]:
        """(height, width) of the tensor the graph takes."""
        if self.do_center_crop and self.crop_size:
            return int(self.crop_size["height"]), int(self.crop_size["width"])
        if "height" in self.size:
            return int(self.size["height"]), int(self.size["width"])
        edge = int(self.size["shortest_edge"])
        return edge, edge


@dataclass(frozen=True)
class Manifest:
    schema_version: int
    model_id: str
    revision: str | None
    commit: str | None
    architecture: str
    model_type: str
    embedding_dim: int
    random_weights: bool
    preprocess: PreprocessConfig
    files: dict[str, ModelFile]
    opset: int
    versions: dict[str, str]
    created_at: str
    external_data: bool = False
    # sha256 of the fused fp32 graph every precision is derived from (see `embedding_identity`)
    source_sha256: str = ""
    # cosine at or above which `edge-search dupes` calls two images near-duplicates (None: the family default,
    # `family_threshold`). It does not change embeddings.
    dupe_threshold: float | None = None
    # CLIP bundles: the text tower for `query --text` (None: an image-only bundle)
    text: TextTower | None = None
    # precisions the exporter made but left out because they failed their parity gate: precision -> figures
    # (min_cosine, threshold, tower). The runtime's `auto` picks from what is there; this says why not more.
    rejected: dict[str, dict[str, Any]] = field(default_factory=dict)
    # token merging (ToMe) built into every graph: r (tokens merged per block), tokens_last_block and
    # against_unmerged (cosines to the same model without merging); None: every token runs through every block
    token_merging: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Manifest:
        try:
            version = raw["schema_version"]
            if version != SCHEMA_VERSION:
                raise BundleError(
                    f"The bundle's manifest has schema version {version}; this edge-search reads version "
                    f"{SCHEMA_VERSION}. Re-export the model with the matching export-model."
                )
            files = {precision: _model_file(spec) for precision, spec in raw["files"].items()}
            fields = {key: raw[key] for key in cls.__dataclass_fields__ if key in raw}
            fields.update(
                preprocess=PreprocessConfig(**raw["preprocess"]),
                files=files,
                text=TextTower.from_dict(raw["text"]) if raw.get("text") else None,
            )
            manifest = cls(**fields)
        except BundleError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"The bundle's manifest is malformed ({type(exc).__name__}: {exc}).") from exc
        for precision in [*manifest.files, *(manifest.text.files if manifest.text else ())]:
            if precision not in GRAPH_PRECISIONS:
                raise BundleError(f"The manifest lists an unknown precision {precision!r}.")
        if not manifest.source_sha256:
            raise BundleError(
                "The bundle's manifest lacks source_sha256 (made by a pre-release export-model); re-export the model."
            )
        if manifest.external_data:
            raise BundleError("The bundle's graphs reference external data files, which edge-search refuses.")
        for spec in manifest.files.values():
            _plain_name(spec.path)
        if manifest.text:
            for spec in manifest.text.files.values():
                _plain_name(spec.path)
            _plain_name(manifest.text.tokenizer)
        return manifest


def missing_bundle(root: Path) -> str:
    """Why `root` is no bundle, and the way out that is safe for what is there: `export-model --out` only for a
    folder that does not exist or is empty (export-model would replace anything else, with --force); a Hugging
    Face checkpoint is exported from, never into."""
    pointer = "or point --model / EDGE_SEARCH_MODEL at the folder export-model wrote."
    elsewhere = "the folder export-model wrote (--model / EDGE_SEARCH_MODEL)."
    if (root / "config.json").is_file():
        return (
            f"{root} is a Hugging Face checkpoint, not a model bundle (no {MANIFEST_NAME}). Export a bundle from it "
            f"into a new folder, `export-model --model {root} --out NEW_FOLDER`, and pass that folder as --model."
        )
    try:
        empty = not any(root.iterdir())
    except OSError:  # no such folder (or not one): export-model may create it
        empty = not root.exists()
    if empty:
        return (
            f"No model bundle at {root} (no {MANIFEST_NAME} there). Create one with `export-model --out {root}`, "
            + pointer
        )
    return f"No model bundle at {root}: the folder holds other files and no {MANIFEST_NAME}. Give --model " + elsewhere


@dataclass(frozen=True)
class Bundle:
    """A loaded, size-checked bundle directory."""

    root: Path
    manifest: Manifest
    manifest_sha256: str

    @classmethod
    def load(cls, root: Path | str) -> Bundle:
        root = Path(root).expanduser()
        manifest_path = root / MANIFEST_NAME
        if not manifest_path.is_file():
            raise BundleError(missing_bundle(root))
        try:
            raw_bytes = manifest_path.read_bytes()
            raw = json.loads(raw_bytes)
        except (OSError, ValueError) as exc:
            raise BundleError(f"Cannot read {manifest_path}: {exc}.") from exc
        if not isinstance(raw, dict):
            raise BundleError(f"{manifest_path} is not a JSON object.")
        manifest = Manifest.from_dict(raw)
        bundle = cls(root=root, manifest=manifest, manifest_sha256=hashlib.sha256(raw_bytes).hexdigest())
        for spec in bundle.all_files():
            bundle._check_size(spec)
        return bundle

    def all_files(self) -> list[ModelFile]:
        """Every graph of the bundle: the image tower's, then the text tower's."""
        return [*self.manifest.files.values(), *(self.manifest.text.files.values() if self.manifest.text else ())]

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(p for p in GRAPH_PRECISIONS if p in self.manifest.files)

    def _check_size(self, spec: ModelFile) -> os.stat_result:
        path = self.root / spec.path
        try:
            stat = path.stat()
        except OSError as exc:
            raise BundleError(
                f"The bundle at {self.root} is incomplete: {spec.path} is missing ({exc.strerror})."
            ) from exc
        if stat.st_size != spec.bytes:
            raise BundleError(
                f"{path} has {stat.st_size} bytes but the manifest says {spec.bytes}: the file is truncated or "
                "was replaced. Re-export or re-copy the bundle."
            )
        return stat

    def model_path(self, precision: str, *, cache: VerifiedCache | None = None) -> Path:
        """The verified path of one graph: size always, sha256 unless this exact file state was verified before."""
        spec = self.manifest.files.get(precision)
        if spec is None:
            rejected = self.manifest.rejected.get(precision)
            why = (
                (
                    ": export-model left it out because it failed its parity gate (min cosine "
                    f"{rejected['min_cosine']:.4f} "
                    f"against PyTorch, below {rejected['threshold']})"
                )
                if rejected
                else ""
            )
            raise BundleError(
                f"The bundle at {self.root} has no {precision} graph{why} (it has: {', '.join(self.precisions)})."
            )
        return self._verified(self.root / spec.path, spec.sha256, cache, spec)

    def text_paths(self, precision: str, *, cache: VerifiedCache | None = None) -> tuple[Path, Path]:
        """The verified (text graph, tokenizer.json) of the text tower, in `precision` if the bundle has
        it, else fp32."""
        text = self.manifest.text
        if text is None:
            raise BundleError(f"The bundle at {self.root} ({self.manifest.model_id}) has no text tower.")
        spec = text.files.get(precision) or text.files.get("fp32") or next(iter(text.files.values()))
        graph = self._verified(self.root / spec.path, spec.sha256, cache, spec)
        return graph, self._verified(self.root / text.tokenizer, text.tokenizer_sha256, cache)

    def _verified(self, path: Path, sha256: str, cache: VerifiedCache | None, spec: ModelFile | None = None) -> Path:
        """Size (from the manifest) always; sha256 unless this exact file state was verified before."""
        try:
            stat = self._check_size(spec) if spec else path.stat()
        except OSError as exc:
            raise BundleError(
                f"The bundle at {self.root} is incomplete: {path.name} is missing ({exc.strerror})."
            ) from exc
        cache = cache or VerifiedCache()
        if not cache.known_good(path, stat, sha256):
            actual = sha256_file(path)
            if actual != sha256:
                raise BundleError(
                    f"{path} does not match its manifest (sha256 {actual[:12]}… instead of {sha256[:12]}…): "
                    "the file was altered or corrupted. Re-export or re-copy the bundle."
                )
            cache.remember(path, stat, sha256)
        return path

    @property
    def identity(self) -> str:
        """What a catalog records to know which bundle built it: see `embedding_identity`."""
        return embedding_identity(self.manifest)

    # With `identity`, what an index records of the bundle that fills it (store.generations.Binding).
    @property
    def model_id(self) -> str:
        return self.manifest.model_id

    @property
    def bundle_path(self) -> str:
        return str(self.root.resolve())

    @property
    def dim(self) -> int:
        return self.manifest.embedding_dim

    @property
    def random_weights(self) -> bool:
        return self.manifest.random_weights


def embedding_identity(manifest: Manifest) -> str:
    """A hash of what determines the embeddings, and of nothing else.

    In: the architecture, the embedding size, the preprocessing, and the weights (as the hash of the
    fused fp32 graph every precision is made from). Out: timestamps, versions, parity figures, the
    model id as spelled on the command line, and which precisions the bundle happens to carry. So
    re-exporting the same checkpoint, or adding a precision, keeps the identity; other weights or
    other preprocessing change it. Precisions of one identity may be mixed in an index (int8 and
    fp16 answer within their parity bounds of fp32).
    """
    source = manifest.source_sha256
    determining = {
        "architecture": manifest.architecture,
        "model_type": manifest.model_type,
        "embedding_dim": manifest.embedding_dim,
        "preprocess": asdict(manifest.preprocess),
        "source_sha256": source,
    }
    return hashlib.sha256(json.dumps(determining, sort_keys=True).encode()).hexdigest()
