"""How the service is set up, and the one exception its handlers raise to refuse a request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class ServiceConfig:
    token: str | None = None
    allowed_hosts: tuple[str, ...] = ()  # names (besides IP addresses and localhost) a tokenless service answers
    queries_per_client: int = 16  # searches one client address may have in flight (a household shares one); 429 beyond
    max_upload_bytes: int = 32 * 2**20
    # pixels the photos of one search may declare, and one client's searches in flight together: decoding is the
    # cost an upload controls (8 PNGs of 169 MP in 4 MB held the worker 11 s); checked from headers, nothing decoded
    max_query_pixels: int = 200_000_000
    default_k: int = 24
    max_k: int = 500
    watch: bool = False  # keep the library current (the service becomes its writer)
    settle_s: float = 1.0  # quiet time after the last file event before indexing
    rescan_s: float = 300.0  # full rescan interval (events can be lost; network shares send none)
    log: Callable[[str], None] = field(default=lambda message: None)
    milvus: str | None = None  # a fleet collection: `scope=fleet` queries search every synced box
    milvus_collection: str | None = None
    milvus_token: str | None = None


class HttpError(Exception):
    """A refused request: its status and the message the JSON body carries."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
