"""A typed view of the catalog's `meta` table, as `Manifest` is of the bundle's manifest.json.

The table stays key/value text (readable with the sqlite3 shell); this module is the only one that knows
the keys and their types.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, get_type_hints

from edge_search.runtime.store import vector_index as vi


@dataclass(frozen=True)
class IndexMeta:
    schema_version: int = 0
    bundle_identity: str | None = None
    bundle_path: str | None = None
    model_id: str | None = None
    dim: int | None = None
    precision: str | None = None
    random_weights: bool = False
    vector_dtype: str = vi.DEFAULT_DTYPE
    connectivity: int = vi.DEFAULT_CONNECTIVITY
    expansion_add: int = vi.DEFAULT_EXPANSION_ADD
    expansion_search: int = vi.DEFAULT_EXPANSION_SEARCH
    generation: int = 0
    index_file: str | None = None
    index_sha256: str | None = None
    index_count: int = 0
    last_indexed_at: str | None = None
    decode_limits: str | None = None  # the decoding limits the last run used: failed files are retried when they change
    catalog_version: int = 0  # bumped in the same transaction as every change to the vectors
    published_version: int | None = None  # the catalog_version the published generation reflects

    @property
    def published_is_current(self) -> bool:
        """Whether the published generation holds every committed vector change (a writer killed
        between a commit and its publish leaves this False, so the next run publishes)."""
        return self.index_file is not None and self.published_version == self.catalog_version

    @property
    def bound(self) -> bool:
        """Whether a writer ever bound this index to a bundle (and so fixed its dimension)."""
        return self.dim is not None

    @property
    def settings(self) -> vi.IndexSettings:
        return vi.IndexSettings(
            dim=int(self.dim or 0),
            dtype=self.vector_dtype,
            connectivity=self.connectivity,
            expansion_add=self.expansion_add,
            expansion_search=self.expansion_search,
        )

    def with_settings(self, settings: vi.IndexSettings) -> IndexMeta:
        return replace(
            self,
            dim=settings.dim,
            vector_dtype=settings.dtype,
            connectivity=settings.connectivity,
            expansion_add=settings.expansion_add,
            expansion_search=settings.expansion_search,
        )

    @classmethod
    def from_rows(cls, rows: dict[str, str]) -> IndexMeta:
        types = get_type_hints(cls)
        values: dict[str, Any] = {}
        for spec in fields(cls):
            if spec.name not in rows:
                continue
            raw, kind = rows[spec.name], types[spec.name]
            if kind is bool:
                values[spec.name] = raw not in ("0", "False", "")
            elif kind in (int, int | None):
                values[spec.name] = int(raw)
            else:
                values[spec.name] = raw
        return cls(**values)

    def to_rows(self) -> dict[str, str]:
        """Every set field under its key."""
        rows = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is None:
                continue
            rows[spec.name] = str(int(value)) if isinstance(value, bool) else str(value)
        return rows
