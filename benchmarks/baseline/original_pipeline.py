"""The pipeline edge-search replaces, as the blog post built it: transformers ViTImageProcessor + ViTModel
in PyTorch (fp32) behind a chromadb custom embedding function, persisted with PersistentClient.

Runs in its own virtualenv (torch + transformers + chromadb; chromadb pulls the CPU onnxruntime, which
would overwrite onnxruntime-gpu). Commands print one JSON line:
  index CHECKPOINT DB DIR        embed every image under DIR in batches of 8 (ids: md5 of the path)
  query CHECKPOINT DB IMG [--warm N]   top-10 by collection.query(n_results=10); --warm times N repeats
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

STARTED = time.perf_counter()

import chromadb  # noqa: E402
import torch  # noqa: E402
from chromadb import Documents, EmbeddingFunction, Embeddings  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import ViTImageProcessor, ViTModel  # noqa: E402

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


class ViTEmbeddingFunction(EmbeddingFunction[Documents]):
    """Documents are image paths; the embedding is the CLS token of the last hidden state."""

    def __init__(self, checkpoint: str):
        self.processor = ViTImageProcessor.from_pretrained(checkpoint)
        self.model = ViTModel.from_pretrained(checkpoint, add_pooling_layer=False).eval()

    def __call__(self, input: Documents) -> Embeddings:
        images = [Image.open(path).convert("RGB") for path in input]
        with torch.no_grad():
            cls = self.model(**self.processor(images=images, return_tensors="pt")).last_hidden_state[:, 0]
        return cls.numpy().tolist()


def collection(db: str, checkpoint: str):
    client = chromadb.PersistentClient(path=db)
    return client.get_or_create_collection("images", embedding_function=ViTEmbeddingFunction(checkpoint),
                                           metadata={"hnsw:space": "cosine"})


def index(checkpoint: str, db: str, directory: str) -> None:
    images = collection(db, checkpoint)
    paths = sorted(os.path.join(root, name) for root, _, names in os.walk(directory) for name in names
                   if os.path.splitext(name)[1].lower() in SUFFIXES)
    started = time.perf_counter()
    for start in range(0, len(paths), 8):
        batch = paths[start : start + 8]
        images.add(ids=[hashlib.md5(p.encode()).hexdigest() for p in batch], documents=batch)
    seconds = time.perf_counter() - started
    print(json.dumps({"images": len(paths), "seconds": seconds, "count": images.count()}))


def query(checkpoint: str, db: str, image: str, warm: int = 0) -> None:
    images = collection(db, checkpoint)
    result = images.query(query_texts=[image], n_results=10)
    out = {"results": result["documents"][0], "cold_seconds": time.perf_counter() - STARTED}
    if warm:
        times = []
        for _ in range(warm):
            t = time.perf_counter()
            images.query(query_texts=[image], n_results=10)
            times.append(time.perf_counter() - t)
        out["warm_ms"] = sorted(times)[len(times) // 2] * 1000
    print(json.dumps(out))


if __name__ == "__main__":
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    command, *rest = sys.argv[1:]
    if command == "index":
        index(*rest)
    elif command == "query":
        warm = int(rest[rest.index("--warm") + 1]) if "--warm" in rest else 0
        query(*rest[:3], warm=warm)
    else:
        raise SystemExit(__doc__)
