"""`edge-search verify`: every check a user needs when something looks wrong, each with a verdict.

Bundle hashes (in full, ignoring the cache), the catalog (`PRAGMA integrity_check`, duplicates), the
published index file against the catalog, and which execution providers really start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import vector_index as vi
from .bundle import Bundle, sha256_file
from .catalog import Catalog
from .errors import EdgeSearchError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_bundle(root: Path) -> list[Check]:
    try:
        bundle = Bundle.load(root)
    except EdgeSearchError as exc:
        return [Check("bundle", False, str(exc))]
    checks = [Check("bundle", True, f"{bundle.manifest.model_id} at {bundle.root} (schema {bundle.manifest.schema_version})")]
    for precision, spec in bundle.manifest.files.items():
        actual = sha256_file(bundle.root / spec.path)
        checks.append(Check(f"bundle {precision}", actual == spec.sha256,
                            "sha256 matches the manifest" if actual == spec.sha256 else "sha256 differs from the manifest: re-export or re-copy"))
    return checks


def check_index(directory: Path) -> list[Check]:
    try:
        catalog = Catalog.open(directory, create=False)
    except EdgeSearchError as exc:
        return [Check("catalog", False, str(exc))]
    try:
        integrity = catalog.integrity_check()
        checks = [Check("catalog", integrity == "ok", f"PRAGMA integrity_check: {integrity}")]
        duplicates = catalog.duplicate_paths()
        checks.append(Check("catalog rows", duplicates == 0, f"{catalog.count()} indexed, {catalog.count('failed')} failed, {duplicates} duplicate paths"))
        meta = catalog.meta()
        name, sha = meta.get("index_file"), meta.get("index_sha256")
        if not name:
            checks.append(Check("index file", False, "no generation published yet: run `edge-search index`"))
            return checks
        try:
            index = vi.load_verified(directory / name, sha, view=True)
        except EdgeSearchError as exc:
            checks.append(Check("index file", False, f"{exc} The next query or index run rebuilds it from the catalog."))
            return checks
        want = catalog.ok_ids()
        have = {int(k) for k in index.keys} if len(index) else set()
        same = want == have
        checks.append(Check("index file", same, f"{name}: sha256 ok, {len(have)} vectors" +
                            ("" if same else f"; {len(want - have)} missing, {len(have - want)} extra versus the catalog (the next index run reconciles)")))
        return checks
    finally:
        catalog.close()


def check_providers(root: Path) -> list[Check]:
    import onnxruntime as ort

    from .session import open_session

    try:
        bundle = Bundle.load(root)
    except EdgeSearchError:
        return []
    checks = []
    available = ort.get_available_providers()
    for device in ("cuda", "cpu"):
        provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
        if provider not in available:
            checks.append(Check(f"provider {device}", device != "cpu", f"{provider} is not in this onnxruntime build"))
            continue
        try:
            session, _ = open_session(bundle, device=device)
            checks.append(Check(f"provider {device}", True, f"starts: {session.provider} with {session.precision}"))
        except EdgeSearchError as exc:
            checks.append(Check(f"provider {device}", device != "cpu", f"does not start: {exc}"))
    return checks
