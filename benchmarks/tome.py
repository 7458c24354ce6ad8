"""Fewer tokens: token merging (ToMe, Bolya et al. 2023, training-free) in every layer, explored before it could
become an export option. What it costs in search quality, on trained weights, and what it saves in time.

    python -m benchmarks.tome [--quick] [--json FILE]

Each transformer block merges `r` pairs of similar patch tokens after its attention (bipartite soft matching on
the attention keys, size-weighted averages, attention biased by log size; the class token is never merged), so a
224 px ViT-B/16 goes from 197 tokens to 197 - 12 r by the last block. Written here over transformers' own layers
(ViTLayer, Dinov2Layer); with r = 0 it reproduces transformers' output (checked, cosine printed).

- Quality: the trained DINOv2 ViT-S/14 fixture, PyTorch fp32, transformers' processor; the quality benchmark's
  gallery, queries and edits (benchmarks/quality.py): top-1 per edit, and the mild edits' mean, per r.
- Speed: ViT-B/16 (random weights: the default model's shapes), exported per r through torch.onnx and run by
  onnxruntime's CPU provider, fp32 and dynamic int8, batch 8, alternating runs; ratio to r = 0.

The rule the issue set: ship it only if the mild edits' top-1 stays within 1 point of the unmerged model's.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import section_main

RATES = (0, 4, 8, 12)  # tokens merged per block (ViT-S/14 at 224: 257 tokens; ViT-B/16: 197)


def _merge(x, metric, size, r: int):
    """Merge `r` tokens of `x` [B, N, C] into their most similar partner (by `metric`), keeping the class token
    first and the others in order; `size` [B, N, 1] counts the patches each token stands for."""
    import torch

    metric = metric / metric.norm(dim=-1, keepdim=True)
    a, b = metric[:, ::2], metric[:, 1::2]
    scores = a @ b.transpose(-1, -2)
    scores[:, 0, :] = -math.inf  # the class token (first of `a`) is never merged away
    best, partner = scores.max(dim=-1)
    order = best.argsort(dim=-1, descending=True)[..., None]
    kept, merged = order[:, r:], order[:, :r]
    kept = kept.sort(dim=1)[0]  # original order: the class token stays first
    into = partner[..., None].gather(1, merged)

    def combine(t):
        src, dst = t[:, ::2], t[:, 1::2]
        channels = t.shape[-1]
        unmerged = src.gather(1, kept.expand(-1, -1, channels))
        moved = src.gather(1, merged.expand(-1, -1, channels))
        dst = dst.scatter_reduce(1, into.expand(-1, -1, channels), moved, reduce="sum")
        return torch.cat([unmerged, dst], dim=1)

    weighted, size = combine(x * size), combine(size)
    return weighted / size, size


def _block(layer, x, size, r: int, dinov2: bool):
    """One transformer block of transformers' ViTLayer or Dinov2Layer, with proportional attention and merging."""
    attention = layer.attention.attention
    heads, width = attention.num_attention_heads, attention.attention_head_size
    h = (layer.norm1 if dinov2 else layer.layernorm_before)(x)
    batch, tokens, _ = h.shape

    def split(t):
        return t.view(batch, tokens, heads, width).transpose(1, 2)

    q, k, v = split(attention.query(h)), split(attention.key(h)), split(attention.value(h))
    logits = q @ k.transpose(-1, -2) / math.sqrt(width) + size.log()[:, None, None, :, 0]
    context = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, tokens, heads * width)
    out = layer.attention.output.dense(context)
    x = x + (layer.layer_scale1(out) if dinov2 else out)
    if r:
        x, size = _merge(x, k.mean(dim=1), size, r)
    if dinov2:
        x = x + layer.layer_scale2(layer.mlp(layer.norm2(x)))
    else:
        x = x + layer.output.dense(layer.intermediate(layer.layernorm_after(x)))
    return x, size


class Merged:
    """A transformers ViTModel / Dinov2Model whose blocks merge `r` tokens each: `(pixel_values) -> unit CLS`."""

    def __init__(self, model, r: int):
        self.model, self.r = model, r
        self.dinov2 = model.config.model_type == "dinov2"

    def __call__(self, pixel_values):
        import torch

        x = self.model.embeddings(pixel_values)
        size = torch.ones(x.shape[0], x.shape[1], 1, dtype=x.dtype)
        for layer in self.model.encoder.layer:
            x, size = _block(layer, x, size, self.r, self.dinov2)
        cls = self.model.layernorm(x)[:, 0]
        return torch.nn.functional.normalize(cls, dim=-1)


def _module(model, r: int):
    import torch

    merged = Merged(model, r)

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, pixel_values):
            return merged(pixel_values)

    return Wrapper().eval()


def quality(quick: bool) -> dict:
    """Top-1 per edit per r on the trained fixture (PyTorch fp32)."""
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModel

    from .edits import EDITS, MILD, save_edit
    from .quality import _ranks, gallery_and_queries, scene
    from .trained_fixture import trained_fixture

    fixture = trained_fixture()
    gallery, queries = gallery_and_queries(fixture, quick)
    processor = AutoImageProcessor.from_pretrained(fixture.dinov2, use_fast=False)
    model = AutoModel.from_pretrained(fixture.dinov2).eval()
    scenes = np.array([scene(p) for p in gallery])
    same = np.stack([scenes == scene(original) for original in queries])

    def pixels(paths: list[Path]) -> list:
        return [
            processor(images=[Image.open(p).convert("RGB") for p in paths[i : i + 16]], return_tensors="pt")[
                "pixel_values"
            ]
            for i in range(0, len(paths), 16)
        ]

    with tempfile.TemporaryDirectory(prefix="tome-") as work:
        copies = {edit: pixels([save_edit(original, edit, Path(work)) for original in queries]) for edit in EDITS}
        base = pixels(gallery)
    with torch.no_grad():
        reference = torch.cat([model(pixel_values=chunk).last_hidden_state[:, 0] for chunk in base[:1]])
        unmerged = torch.cat([Merged(model, 0)(chunk) for chunk in base[:1]])
        check = float(torch.nn.functional.cosine_similarity(reference, unmerged).min())
        rows = []
        for r in (0, 8) if quick else RATES:
            merged = Merged(model, r)
            vectors = torch.cat([merged(chunk) for chunk in base]).numpy()
            top1 = {}
            for edit, chunks in copies.items():
                _, rank = _ranks(torch.cat([merged(chunk) for chunk in chunks]).numpy() @ vectors.T, same)
                top1[edit] = round(100.0 * float(np.mean(rank == 0)), 1)
            mild = round(float(np.mean([top1[e] for e in MILD])), 1)
            rows.append({"r": r, "tokens_last_block": 257 - 12 * r, "top1_percent": top1, "mild_mean": mild})
    return {
        "model": "DINOv2 ViT-S/14 trained (the fixture), PyTorch fp32",
        "r0_cosine_to_transformers": round(check, 6),
        "gallery": len(gallery),
        "queries": len(queries),
        "mild": list(MILD),
        "rows": rows,
    }


def speed(quick: bool) -> dict:
    """Model-only images/s per r on ViT-B/16 through onnxruntime's CPU provider (fp32 and dynamic int8)."""
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    from .common import default_bundle

    checkpoint = default_bundle(False)[1]  # the default model's shapes, also in --quick
    model = AutoModel.from_pretrained(checkpoint).eval()
    size = model.config.image_size
    batch = np.random.default_rng(0).standard_normal((8, 3, size, size)).astype(np.float32)
    sessions = {}
    with tempfile.TemporaryDirectory(prefix="tome-onnx-") as work:
        for r in (0, 8) if quick else RATES:
            fp32 = Path(work) / f"r{r}.onnx"
            torch.onnx.export(
                _module(model, r),
                (torch.from_numpy(batch),),
                str(fp32),
                input_names=["pixel_values"],
                output_names=["embedding"],
                dynamic_axes={"pixel_values": {0: "batch"}, "embedding": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
            int8 = Path(work) / f"r{r}.int8.onnx"
            quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
            for precision, path in (("fp32", fp32), ("int8", int8)):
                options = ort.SessionOptions()
                sessions[(r, precision)] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        timings: dict[tuple[int, str], list[float]] = {key: [] for key in sessions}
        for _ in range(2 if quick else 5):  # alternating: each round runs every graph once
            for key, session in sessions.items():
                session.run(None, {"pixel_values": batch})  # warm
                started = time.perf_counter()
                session.run(None, {"pixel_values": batch})
                timings[key].append(time.perf_counter() - started)
    rows = []
    for (r, precision), seconds in timings.items():
        best = min(seconds)
        base = min(timings[(0, precision)])
        rows.append(
            {"r": r, "precision": precision, "images_per_s": round(8 / best, 2), "speedup": round(base / best, 2)}
        )
    return {"model": "ViT-B/16 random weights, onnxruntime CPU, batch 8", "tokens": 197, "rows": rows}


def measure(quick: bool) -> dict:
    return {"quality": quality(quick), "speed": speed(quick)}


def markdown(report: dict) -> str:
    q, s = report["quality"], report["speed"]
    edits = list(q["rows"][0]["top1_percent"])
    lines = [
        f"Quality: {q['model']} (r = 0 reproduces transformers: cosine {q['r0_cosine_to_transformers']}); gallery "
        f"{q['gallery']}, {q['queries']} originals; top-1 % per edit (mild: {', '.join(q['mild'])}).",
        "",
        "| r (tokens merged per block) | tokens in the last block | " + " | ".join(edits) + " | mild mean |",
        "|---|---|" + "---|" * len(edits) + "---|",
    ]
    for row in q["rows"]:
        cells = " | ".join(str(row["top1_percent"][e]) for e in edits)
        lines.append(f"| {row['r']} | {row['tokens_last_block']} | {cells} | {row['mild_mean']} |")
    lines += ["", f"Speed: {s['model']}; ratio to r = 0 of the same precision.", ""]
    lines += ["| r | fp32 images/s (×) | int8 images/s (×) |", "|---|---|---|"]
    by_r: dict[int, dict[str, dict]] = {}
    for row in s["rows"]:
        by_r.setdefault(row["r"], {})[row["precision"]] = row
    for r, cells in by_r.items():
        lines.append(
            f"| {r} | {cells['fp32']['images_per_s']} ({cells['fp32']['speedup']}×) | "
            f"{cells['int8']['images_per_s']} ({cells['int8']['speedup']}×) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    section_main("python -m benchmarks.tome", __doc__, measure, markdown)
