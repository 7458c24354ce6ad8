"""A query made of photos and words, each weighted, some of them negative ("unlike this"): one rule for the
command line, the library and the HTTP API.

The rule (rclip's): the weighted sum of the terms' unit embeddings, re-normalised. A photo or phrase weighs 1
unless given another weight; a negative term subtracts its embedding, so results move away from it. Several
photos of weight 1 thus ask for what they have in common (the direction of their mean).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edge_search.runtime.errors import UsageError
from edge_search.runtime.model.embedder import l2_normalize
from edge_search.runtime.options import ImageSource

if TYPE_CHECKING:
    from edge_search.runtime.model.model import Model

_WEIGHTED = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?):(.*)$", re.DOTALL)
MAX_WEIGHT = 100.0  # a term's weight is a number with 0 < |weight| <= 100 (README "Combined queries")


@dataclass(frozen=True)
class Term:
    """One part of a query: a photo (`image`) or words (`text`), and its weight; negative: results unlike it."""

    image: ImageSource | None = None
    text: str | None = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        if (self.image is None) == (self.text is None):
            raise UsageError("A query term is either a photo or words.")
        if not (math.isfinite(self.weight) and 0 < abs(self.weight) <= MAX_WEIGHT):
            raise UsageError(
                f"A query term's weight must be a number between -{MAX_WEIGHT:g} and {MAX_WEIGHT:g}, other than 0, "
                f"not {self.weight:g}."
            )
        if self.text is not None and not self.text.strip():
            raise UsageError("A query phrase is empty.")


def weighted(word: str, *, is_file: Callable[[str], bool] = os.path.isfile) -> tuple[float, str]:
    """'2:golden retriever' -> (2.0, 'golden retriever'); '0.5:beach.jpg' -> (0.5, 'beach.jpg'); a word without a
    weight, or one that names an existing file as it stands ('2:1.jpg' when that file exists), weighs 1."""
    match = _WEIGHTED.match(word)
    if match is None or is_file(word):
        return 1.0, word
    return float(match.group(1)), match.group(2)


def terms_from(
    images: Sequence[ImageSource] = (),
    texts: Sequence[str] = (),
    unlike_images: Sequence[ImageSource] = (),
    unlike_texts: Sequence[str] = (),
    *,
    text_weight: float = 1.0,
) -> list[Term]:
    """Terms from words as people type them: photos and phrases, each may start with `WEIGHT:`; the unlike ones
    get their weight negated. `text_weight`: the weight of phrases that give none."""
    terms: list[Term] = []
    for sign, sources in ((1.0, images), (-1.0, unlike_images)):
        for source in sources:
            if isinstance(source, str):
                weight, path = weighted(source)
                terms.append(Term(image=path, weight=sign * weight))
            else:
                terms.append(Term(image=source, weight=sign))
    for sign, phrases in ((1.0, texts), (-1.0, unlike_texts)):
        for phrase in phrases:
            weight, words = weighted(phrase, is_file=lambda _: False)
            given = _WEIGHTED.match(phrase) is not None
            terms.append(Term(text=words, weight=sign * (weight if given else text_weight)))
    return terms


def require_text_tower(model: Model, terms: Sequence[Term]) -> None:
    """A UsageError (exit 2) when words are asked of a bundle that cannot embed them."""
    if any(term.text is not None for term in terms) and not model.has_text:
        raise UsageError(
            f"Searching by words needs a CLIP bundle (one exported from a CLIPModel, e.g. `export-model --model "
            f"openai/clip-vit-base-patch32`); this index's model, {model.bundle.manifest.model_id}, has no text tower."
        )


def combine(
    model: Model | None,
    terms: Sequence[Term],
    pixels: np.ndarray | None = None,
    known: dict[int, np.ndarray] | None = None,
) -> np.ndarray:
    """The unit query vector of `terms`: the weighted sum of their unit embeddings, re-normalised. `pixels`: the
    photo terms already decoded and preprocessed, in order, if they are (all of them, or those not `known`).
    `known`: position among the photo terms
    -> the embedding the index stored for that photo (`known_photos`), used instead of the model's; the model
    (None only when every term is known) embeds the rest."""
    if not terms:
        raise UsageError("A query needs at least one photo or phrase.")
    known = known or {}
    photos = [term for term in terms if term.image is not None]
    if positive_weight(terms) <= 0:
        raise UsageError("A query needs at least one photo or phrase to look like, not only ones to be unlike.")
    new = [i for i in range(len(photos)) if i not in known]
    if model is None and (new or len(photos) < len(terms)):
        raise UsageError("A query by image or text needs a model (Library.open_model).")
    if model is not None:
        require_text_tower(model, terms)
    vectors: dict[int, np.ndarray] = dict(known)
    if new:
        assert model is not None
        if pixels is not None and len(pixels) == len(photos):  # every photo decoded: keep the new ones'
            pixels = pixels[new]
        elif pixels is None or len(pixels) != len(new):  # (else: only the new ones were decoded)
            pixels = np.stack([model.pixels(photos[i].image) for i in new])  # type: ignore[arg-type]
        vectors.update(zip(new, model.embedder.embed_pixels(pixels)))
    dim = len(next(iter(vectors.values()))) if vectors else model.bundle.manifest.embedding_dim  # type: ignore[union-attr]
    total = np.zeros(dim, dtype=np.float32)
    for i, term in enumerate(photos):
        total += term.weight * np.asarray(vectors[i], dtype=np.float32)
    for term in terms:
        if term.text is not None:
            assert model is not None
            total += term.weight * model.embed_text(term.text)
    if float(np.linalg.norm(total)) < 1e-6:
        raise UsageError("The query's photos and phrases cancel each other out: there is nothing left to search for.")
    return l2_normalize(total[None])[0]


def positive_weight(terms: Sequence[Term]) -> float:
    return sum(term.weight for term in terms if term.weight > 0)
