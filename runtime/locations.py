"""Default places on disk, from platformdirs, shared by export-model and edge-search."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "edge-search"
MODEL_ENV = "EDGE_SEARCH_MODEL"
INDEX_ENV = "EDGE_SEARCH_INDEX"


def default_bundle_dir() -> Path:
    """Where `export-model` writes and `edge-search` looks when no --model is given."""
    return Path(os.environ.get(MODEL_ENV) or platformdirs.user_data_path(APP) / "models" / "default")


def default_index_dir() -> Path:
    return Path(os.environ.get(INDEX_ENV) or platformdirs.user_data_path(APP) / "index")


CATALOG_NAME = "catalog.sqlite"  # inside an index directory: the SQLite catalog, the index's truth
