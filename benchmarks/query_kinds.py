"""What a query costs by the way it is asked, as a ratio to a plain one-photo query in the same run: a date range
narrow and wide over a 100k-photo index, and a combined query of 3 photos + 2 phrases.

The model is a CLIP ViT-B/32-sized checkpoint with RANDOM weights (the model hub is unreachable here; speed does
not depend on weight values) and a character-level vocabulary, exported once into benchmarks/.cache. The index
holds random unit vectors bound to that bundle, their dates spread evenly over ten years; each query is the whole
`Library.query` call (embedding included), warm, median over rounds.

    python -m benchmarks.query_kinds [--vectors 100000] [--rounds 15] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import string
import time
from datetime import datetime
from pathlib import Path

import numpy as np

YEARS = (2015, 2025)


def clip_b32_random(cache: Path) -> Path:
    """A random-weight CLIP with ViT-B/32's shapes (vision 768 x 12 layers, patch 32 at 224 px; text 512 x 12
    layers, 77 tokens), exported in fp32 and int8."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer, CLIPTokenizerFast

    from edge_search.export.pipeline import export_bundle

    checkpoint, bundle = cache / "clip-b32-random-checkpoint", cache / "clip-b32-random"
    if (bundle / "manifest.json").is_file():
        return bundle
    checkpoint.mkdir(parents=True, exist_ok=True)
    symbols = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = {token: i for i, token in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    (checkpoint / "vocab.json").write_text(json.dumps(vocab))
    (checkpoint / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(checkpoint / "vocab.json"), str(checkpoint / "merges.txt")).save_pretrained(checkpoint)
    CLIPTokenizerFast.from_pretrained(checkpoint).save_pretrained(checkpoint)
    ends = vocab["<|endoftext|>"]
    text = dict(vocab_size=len(vocab), bos_token_id=vocab["<|startoftext|>"], eos_token_id=ends, pad_token_id=ends)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=dict(patch_size=32))).save_pretrained(checkpoint)
    CLIPImageProcessor().save_pretrained(checkpoint)
    export_bundle(model=str(checkpoint), out=bundle, force=True, precisions=("fp32", "int8"))
    return bundle


def planted_index(bundle: Path, directory: Path, count: int) -> Path:
    """`count` random unit vectors bound to `bundle`, dated evenly over YEARS (built once)."""
    from edge_search.runtime.jobs.dates import naive_seconds
    from edge_search.runtime.model.bundle import Bundle
    from edge_search.runtime.store.generations import IndexWriter

    index = directory / f"planted-{count}"
    if (index / "catalog.sqlite").is_file():
        return index
    loaded = Bundle.load(bundle)
    rng = np.random.default_rng(0)
    start, end = naive_seconds(datetime(YEARS[0], 1, 1)), naive_seconds(datetime(YEARS[1], 1, 1))
    with IndexWriter(index, loaded, precision="int8") as writer:
        for first in range(0, count, 5000):
            vectors = rng.normal(size=(min(5000, count - first), loaded.dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            rows = [
                (os.fsencode(f"/photos/{first + i:06d}.jpg"), 1, 1, f"{first + i:064x}", vector, None, None)
                for i, vector in enumerate(vectors)
            ]
            writer.commit_results(rows)
        ids = [key for (key,) in writer.catalog.db.execute("SELECT id FROM files ORDER BY id")]
        taken = np.linspace(start, end, num=len(ids), endpoint=False)
        writer.set_taken([(key, float(when), "exif") for key, when in zip(ids, taken)])
        writer.publish()
    return index


def measure(bundle: Path, index: Path, photos: list[Path], rounds: int = 15) -> dict:
    from edge_search.runtime.jobs.combined_query import Term
    from edge_search.runtime.jobs.dates import DateRange
    from edge_search.runtime.library import Library
    from edge_search.runtime.model.model import Model
    from edge_search.runtime.options import ModelOptions

    library = Library(index)
    model = Model.open(bundle, ModelOptions(device="cpu", precision="int8"))
    library.warm()
    count = len(library.reader().index())
    kinds = {
        "one photo (plain)": dict(terms=[Term(image=photos[0])]),
        "one photo, one month (0.8% of the photos)": dict(
            terms=[Term(image=photos[0])], dates=DateRange.asked("2020-06", "2020-07")
        ),
        "one photo, five years (50%)": dict(terms=[Term(image=photos[0])], dates=DateRange.asked("2020", "2025")),
        "3 photos + 2 phrases": dict(
            terms=[Term(image=p) for p in photos[:3]] + [Term(text="a dog on a beach"), Term(text="people", weight=-1)]
        ),
    }
    timings: dict[str, list[float]] = {name: [] for name in kinds}
    found: dict[str, int] = {}
    for name, asked in kinds.items():  # warm-up: first calls open the text tower, load pages
        found[name] = len(library.query(model, k=10, **asked).hits)
    for _ in range(rounds):
        for name, asked in kinds.items():
            started = time.perf_counter()
            library.query(model, k=10, **asked)
            timings[name].append((time.perf_counter() - started) * 1000)
    base = statistics.median(timings["one photo (plain)"])
    rows = [
        {
            "query": name,
            "ms": round(statistics.median(values), 1),
            "vs_plain": round(statistics.median(values) / base, 2),
            "hits": found[name],
        }
        for name, values in timings.items()
    ]
    return {"vectors": count, "rounds": rounds, "model": "CLIP ViT-B/32 shapes, RANDOM weights, int8", "rows": rows}


def markdown(report: dict) -> str:
    lines = [
        f"{report['vectors']} vectors; {report['model']}; median of {report['rounds']} warm rounds.",
        "",
        "| query (k = 10) | ms | vs plain | hits |",
        "|---|---|---|---|",
    ]
    for row in report["rows"]:
        lines.append(f"| {row['query']} | {row['ms']} | {row['vs_plain']}× | {row['hits']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.query_kinds", description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from .common import CACHE, machine
    from .real_photos import real_photos

    bundle = clip_b32_random(CACHE)
    index = planted_index(bundle, CACHE, args.vectors)
    photos = sorted(p for p in real_photos(CACHE / "real-photos").iterdir() if p.suffix == ".jpg")[:3]
    report = {"machine": machine(), **measure(bundle, index, photos, args.rounds)}
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
