"""Rows written back to the catalog in chunks, each one transaction: an interrupted fill keeps what it stored."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import islice
from typing import TypeVar

Row = TypeVar("Row")


def store_in_chunks(rows: Iterable[Row], store: Callable[[list[Row]], None], size: int) -> int:
    """Hand `rows` to `store` `size` at a time (the last chunk may be shorter); returns how many were stored."""
    stored = 0
    source = iter(rows)
    while chunk := list(islice(source, size)):
        store(chunk)
        stored += len(chunk)
    return stored
