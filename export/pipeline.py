"""The export, end to end: load -> export -> fuse -> fp16 -> int8 -> parity -> manifest -> publish.

Everything is written into a temporary directory beside `--out` and renamed into place only when
every graph has passed its parity check, so a failure at any step leaves nothing at `--out`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import onnx

from edge_search.runtime.errors import UsageError
from edge_search.runtime.files import sha256_file
from edge_search.runtime.host import cpu_facts, int8_kernels_saturate
from edge_search.runtime.model import selfcheck
from edge_search.runtime.model.bundle import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    TOKENIZER_NAME,
    Manifest,
    ModelFile,
    TensorSpec,
    TextTower,
    family_threshold,
)
from edge_search.runtime.options import DEFAULT_EXPORT_PRECISIONS, GRAPH_PRECISIONS

from . import clip, optimize, parity, static_int8, token_merging
from .errors import (
    ExportError,
    ExportStorageError,
    ExportUsageError,
    ParityError,
    SourceError,
)
from .onnx_export import (
    DEFAULT_OPSET,
    INPUT_NAME,
    OUTPUT_NAME,
    export_onnx,
    export_text_onnx,
)
from .preprocess_config import preprocess_config
from .source import DEFAULT_MODEL, load_source

# A step reporter: called with a step name, used as a context manager around the step.
StepReporter = Callable[[str], contextlib.AbstractContextManager]


@contextlib.contextmanager
def _silent_step(_name: str) -> Iterator[None]:
    yield


@contextlib.contextmanager
def _unsupported_graph(what: str, architecture: str) -> Iterator[None]:
    """A model whose graph torch cannot trace or onnxruntime cannot run: one line saying so, not a traceback
    (disk errors stay disk errors)."""
    try:
        yield
    except (ExportError, OSError):
        raise
    except Exception as exc:  # torch's and onnxruntime's failures come in many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SourceError(f"export-model cannot {what} this {architecture}: {first[:400]}") from exc


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    found = {}
    for dist in ("torch", "transformers", "onnx", "onnxruntime", "onnxruntime-gpu"):
        with contextlib.suppress(md.PackageNotFoundError):
            found[dist] = md.version(dist)
    return found


def _refuse_external_data(path: Path) -> None:
    model = onnx.load(str(path), load_external_data=False)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise SourceError(f"{path.name} needs external data files, which the runtime refuses (model over 2 GB?).")


def _prepare_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportUsageError(f"--out {out} exists and is not a directory.")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportUsageError(
            f"--out {out} already exists and is not empty. Pass --force to replace it, or choose another --out."
        )


def _publish(staging: Path, out: Path) -> None:
    """Swap the finished staging directory into place (old bundle removed only after the rename)."""
    retired = None
    if out.exists():
        retired = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, retired)
    os.replace(staging, out)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
    with contextlib.suppress(OSError):
        fd = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class ExportPlan:
    """One export: the source, the precisions to make and what the gates must let through. `checked()` fills in
    the default precisions and refuses what cannot be met, before anything is loaded."""

    model: str
    revision: str | None = None
    precisions: tuple[str, ...] | None = None  # None: fp32, fp16, int8 and int8-static
    opset: int = DEFAULT_OPSET
    calibration_photos: Path | None = None
    random_weights: bool = False
    dupe_threshold: float | None = None
    require: tuple[str, ...] = ()
    merge_tokens: int = 0  # ToMe: tokens merged per block (0: none)

    def checked(self) -> ExportPlan:
        """This plan with its precisions in GRAPH_PRECISIONS order, or ExportUsageError naming the option."""
        precisions, dupe_threshold, require = self.precisions, self.dupe_threshold, self.require
        if precisions is None:
            precisions = DEFAULT_EXPORT_PRECISIONS
        if self.calibration_photos is not None and not Path(self.calibration_photos).expanduser().is_dir():
            raise ExportUsageError(f"--calibration-photos {self.calibration_photos} is not a directory.")
        unknown = set(precisions) - set(GRAPH_PRECISIONS)
        if unknown or not precisions:
            raise ExportUsageError(
                f"--precision takes any of {', '.join(GRAPH_PRECISIONS)}; got {', '.join(precisions) or 'none'}."
            )
        if dupe_threshold is not None and not 0.0 < dupe_threshold <= 1.0:
            raise ExportUsageError(f"--dupe-threshold is a cosine similarity in (0, 1]; got {dupe_threshold}.")
        if self.merge_tokens < 0:
            raise ExportUsageError(f"--merge-tokens counts tokens per block, 0 or more; got {self.merge_tokens}.")
        if set(require) - set(precisions):
            raise ExportUsageError(
                f"--require {', '.join(sorted(set(require) - set(precisions)))} names a precision that --precision "
                "does not export."
            )
        return replace(self, precisions=tuple(p for p in GRAPH_PRECISIONS if p in precisions), require=tuple(require))


def export_bundle(
    *,
    model: str = DEFAULT_MODEL,
    out: Path,
    revision: str | None = None,
    precisions: tuple[str, ...] | None = None,
    opset: int = DEFAULT_OPSET,
    force: bool = False,
    calibration_photos: Path | None = None,
    random_weights: bool = False,
    dupe_threshold: float | None = None,
    require: tuple[str, ...] = (),
    merge_tokens: int = 0,
    step: StepReporter = _silent_step,
) -> Manifest:
    """Export `model` into a bundle at `out`; a precision that fails its parity gate is left out (see
    `Manifest.rejected`) unless it is in `require`, when nothing is written. `precisions` None: fp32, fp16, int8
    and int8-static, calibrated on `calibration_photos` (a folder like the photos to be searched) or, without
    one, on the photos shipped with the package. `merge_tokens` > 0: every block merges that many tokens (ToMe,
    `token_merging.py`), a different embedding the gates measure against the same merging run in PyTorch."""
    try:
        cpu_facts()  # a stand-in CPU class (EDGE_SEARCH_CPU_CLASS) that names none is refused before any work
    except UsageError as exc:
        raise ExportUsageError(str(exc)) from None
    out = Path(out).expanduser().absolute()
    plan = ExportPlan(
        model=model,
        revision=revision,
        precisions=precisions,
        opset=opset,
        calibration_photos=calibration_photos,
        random_weights=random_weights,
        dupe_threshold=dupe_threshold,
        require=tuple(require),
        merge_tokens=merge_tokens,
    ).checked()
    _prepare_out(out, force)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(os.path.join(out.parent, f".{out.name}.partial-{os.getpid()}"))
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    except OSError as exc:
        raise ExportStorageError(f"Cannot create the bundle beside {out}: {exc.strerror}.") from exc
    try:
        manifest = _build(plan, staging, step)
        _publish(staging, out)
        return manifest
    except OSError as exc:
        raise ExportStorageError(
            f"Writing the bundle failed: {exc.strerror or exc}. Nothing was written to {out}."
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def int8_scheme() -> dict[str, str]:
    """The dynamic int8 graph's scheme. Where the exporting CPU's int8 kernels saturate (AVX2 without VNNI; the
    CPU facts, which a stand-in class can replace), the weights are unsigned (`optimize.to_int8`)."""
    unsigned = int8_kernels_saturate()
    return {
        "weights": "uint8 per output channel (exported on a CPU without VNNI)"
        if unsigned
        else "int8 per output channel",
        "activations": "uint8 per tensor, dynamic (one image per call)",
    }


def quantization_schemes() -> dict[str, dict[str, Any]]:
    """What the manifest records of how each quantized graph was made (export-time CPU facts included)."""
    return {"int8": int8_scheme(), "int8-static": dict(static_int8.SCHEME)}


def _precision_graphs(fused_path: Path, fused_model, staging: Path, stem: str, precisions, step) -> dict[str, Path]:
    """The bundle's graphs of one tower, derived from its fused fp32 graph: `{stem}.{precision}.onnx`."""
    graphs: dict[str, Path] = {}
    if "fp32" in precisions:
        graphs["fp32"] = staging / f"{stem}.fp32.onnx"
        shutil.copyfile(fused_path, graphs["fp32"])
    if "int8" in precisions:
        with step("int8"):
            graphs["int8"] = staging / f"{stem}.int8.onnx"
            optimize.to_int8(fused_path, graphs["int8"], unsigned_weights=int8_kernels_saturate())
    if "fp16" in precisions:
        with step("fp16"):
            graphs["fp16"] = staging / f"{stem}.fp16.onnx"
            optimize.to_fp16(fused_model, graphs["fp16"])
    return graphs


def _checked_files(
    graphs: dict[str, Path],
    reference,
    inputs,
    spec: tuple[TensorSpec, TensorSpec],
    tower: str,
    rejected: dict[str, dict],
    schemes: dict[str, dict] | None = None,
) -> dict[str, ModelFile]:
    """Each graph measured against the PyTorch reference and described; one that drifts beyond its gate is
    deleted and recorded in `rejected` instead."""
    schemes = quantization_schemes() if schemes is None else schemes
    files: dict[str, ModelFile] = {}
    for precision in GRAPH_PRECISIONS:
        if precision not in graphs:
            continue
        path = graphs[precision]
        _refuse_external_data(path)
        figures = parity.measure(precision, path, reference, inputs, unit="images" if tower == "image" else "texts")
        if not parity.passes(figures):
            rejected.setdefault(precision, {**figures, "tower": tower})
            path.unlink()
            continue
        files[precision] = ModelFile(
            precision=precision,
            path=path.name,
            sha256=sha256_file(path),
            bytes=path.stat().st_size,
            input=spec[0],
            output=spec[1],
            fused_ops=optimize.fused_op_counts(path),
            parity=figures,
            quantization=schemes.get(precision, {}),
            reference=_references(precision, path, spec[0]) if tower == "image" else [],
        )
    return files


def _references(precision: str, path: Path, pixels: TensorSpec) -> list[list[float]]:
    """The graph's embeddings of the runtime's fixed reference inputs, run as the runtime runs it (selfcheck)."""
    height, width = int(pixels.shape[2]), int(pixels.shape[3])
    if precision == "int8-static":
        return selfcheck.reference_embeddings(lambda x: parity.openvino_cls(path, x), height, width)
    return selfcheck.reference_embeddings(lambda x: parity.onnx_cls(path, x), height, width)


def _text_tower(source, work: Path, staging: Path, precisions, opset, rejected: dict[str, dict], step) -> TextTower:
    """CLIP's text tower: graphs per precision (parity-checked on tricky text) and tokenizer.json."""
    length = clip.context_length(source.text_encoder.model)
    raw = work / "text.raw.onnx"
    with step("text export"):
        export_text_onnx(source.text_encoder, raw, context_length=length, opset=opset)
    fused_path = work / "text.fused.fp32.onnx"
    heads, hidden = source.attention_shape("text")
    with step("text fuse"):
        fused_model = optimize.fuse(raw, fused_path, num_heads=heads, hidden_size=hidden, model_type="clip")
    graphs = _precision_graphs(fused_path, fused_model, staging, "text", precisions, step)
    with step("text parity"):
        feeds = clip.tokenize(source.tokenizer, clip.PARITY_TEXTS, length)
        spec = (
            TensorSpec("input_ids", "int64", ["batch", length]),
            TensorSpec(OUTPUT_NAME, "float32", ["batch", source.embedding_dim]),
        )
        files = _checked_files(graphs, clip.text_reference(source.text_encoder, feeds), feeds, spec, "text", rejected)
    tokenizer_path = staging / TOKENIZER_NAME
    source.tokenizer.backend_tokenizer.save(str(tokenizer_path))
    pad_token = source.tokenizer.pad_token or source.tokenizer.eos_token
    return TextTower(
        files=files,
        tokenizer=TOKENIZER_NAME,
        tokenizer_sha256=sha256_file(tokenizer_path),
        context_length=length,
        pad_id=int(source.tokenizer.convert_tokens_to_ids(pad_token)),
        pad_token=str(pad_token),
    )


def _keep_passing(
    image: dict[str, ModelFile],
    text: TextTower | None,
    rejected: dict[str, dict],
    require: tuple[str, ...],
    staging: Path,
) -> tuple[dict[str, ModelFile], TextTower | None]:
    """Drop every rejected precision from both towers (a bundle's precisions are the same for both);
    a rejected precision that was required, or nothing left at all, fails the export."""
    nothing_left = not set(image) - set(rejected)  # the image tower keeps what passed there, less text's rejects
    for precision, figures in rejected.items():
        if precision in require or nothing_left:
            raise ParityError(
                f"Parity check failed for the {figures['tower']} tower's {precision} graph: min cosine "
                f"{figures['min_cosine']:.6f} against PyTorch is below {figures['threshold']}. The bundle was "
                "not written."
            )
    for precision in rejected:
        for spec in (image.pop(precision, None), text.files.pop(precision, None) if text else None):
            if spec is not None:
                (staging / spec.path).unlink()
    return image, text


def _build(plan: ExportPlan, staging: Path, step: StepReporter) -> Manifest:
    precisions = plan.precisions
    assert precisions is not None, "a checked plan"
    with step("load"):
        source = load_source(plan.model, revision=plan.revision, random_weights=plan.random_weights)
        pre = preprocess_config(source.processor)
        height, width = pre.input_hw()
        merging = token_merging.plan(source, plan.merge_tokens, height, width)
    work = staging / ".work"
    work.mkdir()
    raw = work / "raw.onnx"
    with step("export"), _unsupported_graph("export", source.architecture):
        export_onnx(
            source.encoder,
            raw,
            height=height,
            width=width,
            opset=plan.opset,
            rewrite=not source.is_clip,
            merge_tokens=plan.merge_tokens,
        )
    fused_path = work / "fused.fp32.onnx"
    heads, hidden = source.attention_shape("image")
    fusion_type = "clip" if source.is_clip else "vit"
    with step("fuse"), _unsupported_graph("optimize the graph of", source.architecture):
        fused_model = optimize.fuse(
            raw, fused_path, num_heads=heads, hidden_size=hidden, model_type=fusion_type, merged=merging is not None
        )
    source_sha256 = sha256_file(fused_path)  # the bundle's embedding identity, whichever precisions it keeps
    graphs = _precision_graphs(fused_path, fused_model, staging, "model", precisions, step)
    schemes = quantization_schemes()
    if "int8-static" in precisions:
        with step("int8-static (calibrating)"), _unsupported_graph("quantize", source.architecture):
            calibration = static_int8.calibration_pixels(source.processor, plan.calibration_photos)
            graphs["int8-static"] = staging / "model.int8-static.onnx"
            static_int8.to_int8_static(raw, graphs["int8-static"], calibration.pixels, INPUT_NAME)
        schemes["int8-static"] = {**static_int8.SCHEME, **calibration.record()}
    with step("parity"), _unsupported_graph("run the exported graph of", source.architecture):
        pixels = parity.parity_inputs(source.processor)
        spec = (
            TensorSpec(INPUT_NAME, "float32", ["batch", 3, height, width]),
            TensorSpec(OUTPUT_NAME, "float32", ["batch", source.embedding_dim]),
        )
        rejected: dict[str, dict] = {}
        reference = source.image_reference(pixels)
        if merging is not None:
            merged = token_merging.reference(source.encoder, plan.merge_tokens, pixels)
            merging = {**merging, "against_unmerged": parity.agreement(merged, reference)}
            reference = merged
        files = _checked_files(graphs, reference, pixels, spec, "image", rejected, schemes)
    text = _text_tower(source, work, staging, precisions, plan.opset, rejected, step) if source.is_clip else None
    files, text = _keep_passing(files, text, rejected, plan.require, staging)
    shutil.rmtree(work)
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        model_id=source.model_id,
        revision=source.revision,
        commit=source.commit,
        architecture=source.architecture,
        model_type=source.model_type,
        embedding_dim=source.embedding_dim,
        random_weights=source.random_weights,
        preprocess=pre,
        files=files,
        opset=plan.opset,
        versions=_versions(),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        source_sha256=source_sha256,
        dupe_threshold=plan.dupe_threshold if plan.dupe_threshold is not None else family_threshold(source.model_type),
        text=text,
        rejected=rejected,
        token_merging=merging,
    )
    manifest_path = staging / MANIFEST_NAME
    with open(manifest_path, "w") as handle:
        json.dump(manifest.to_dict(), handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    for path in staging.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    return manifest
