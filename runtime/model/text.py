"""Words in, a unit vector in the image embeddings' space out: the text tower of a CLIP bundle.

Tokenising uses the `tokenizers` library (Rust, no transformers) on the tokenizer.json the exporter
wrote, set up as CLIP's own tokenizer is used: lower-casing and whitespace clean-up come from the
file's normaliser, then truncation to the context length (start and end tokens kept) and padding
with the pad token to that length; the graph pools at the end-of-text position itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_search.runtime.errors import BundleError, UsageError
from edge_search.runtime.host import default_threads
from edge_search.runtime.model.bundle import Bundle

MAX_TEXT_CHARS = 10_000  # longer input is cut before tokenising (the model reads 77 tokens anyway)


class TextEncoder:
    """A bundle's text tower, opened once (CPU: text graphs are small and quick)."""

    def __init__(self, session, tokenizer, context_length: int, precision: str):
        self.session = session
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.precision = precision
        self.input_names = [i.name for i in session.get_inputs()]

    @classmethod
    def open(cls, bundle: Bundle, *, precision: str = "fp32", threads: int | None = None) -> TextEncoder:
        from tokenizers import Tokenizer

        from edge_search.runtime.model.providers import load_onnxruntime

        ort = load_onnxruntime()

        text = bundle.manifest.text
        if text is None:
            raise UsageError(
                f"The model of this index ({bundle.manifest.model_id}, {bundle.manifest.architecture}) has no text "
                "tower, so it cannot search by words. Text search needs a CLIP bundle: `export-model --model "
                "openai/clip-vit-base-patch32 --out BUNDLE`, then index into a new location with `--model BUNDLE`."
            )
        graph, tokenizer_file = bundle.text_paths(precision)
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # tokenizers raises plain Exception for malformed files
            raise BundleError(f"Cannot read the bundle's tokenizer {tokenizer_file}: {exc}") from exc
        tokenizer.enable_truncation(max_length=text.context_length)
        tokenizer.enable_padding(length=text.context_length, pad_id=text.pad_id, pad_token=text.pad_token)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(graph), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own error types
            raise BundleError(f"onnxruntime could not load {graph}: {str(exc).strip().splitlines()[0]}") from exc
        used = next(p for p, spec in text.files.items() if bundle.root / spec.path == graph)
        return cls(session, tokenizer, text.context_length, used)

    def token_ids(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask), int64 [len(texts), context_length]."""
        encodings = self.tokenizer.encode_batch([t[:MAX_TEXT_CHARS] for t in texts])
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors, one per text."""
        if any(not t.strip() for t in texts):
            raise UsageError("A text query needs some words; it was empty.")
        ids, mask = self.token_ids(texts)
        feeds = {"input_ids": ids, "attention_mask": mask}
        vectors = self.session.run(None, {name: feeds[name] for name in self.input_names})[0].astype(np.float32)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
