"""`edge-search verify`: every check a user needs when something looks wrong, each with a verdict.

Bundle hashes (in full, ignoring the cache), the catalog (`PRAGMA integrity_check`, duplicates), the
published index file against the catalog, and which execution providers really start. A provider that
this machine cannot offer (CUDA on a CPU-only box) is information, not a failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from edge_search.runtime.errors import EdgeSearchError, ProviderError
from edge_search.runtime.files import sha256_file
from edge_search.runtime.model.bundle import Bundle
from edge_search.runtime.store import vector_index as vi
from edge_search.runtime.store.catalog import Catalog

Status = Literal["ok", "fail", "info"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str

    @property
    def ok(self) -> bool:
        return self.status != "fail"


def _verdict(good: bool) -> Status:
    return "ok" if good else "fail"


def check_bundle_files(root: Path) -> list[Check]:
    try:
        bundle = Bundle.load(root)
    except EdgeSearchError as exc:
        return [Check("bundle", "fail", str(exc))]
    checks = [
        Check("bundle", "ok", f"{bundle.manifest.model_id} at {bundle.root} (schema {bundle.manifest.schema_version})")
    ]
    text = bundle.manifest.text
    files = [(f"bundle {p}", spec.path, spec.sha256) for p, spec in bundle.manifest.files.items()]
    if text:
        files += [(f"bundle text {p}", spec.path, spec.sha256) for p, spec in text.files.items()]
        files.append(("bundle tokenizer", text.tokenizer, text.tokenizer_sha256))
    for name, path, sha256 in files:
        try:
            same = sha256_file(bundle.root / path) == sha256
        except OSError:
            same = False
        checks.append(
            Check(
                name,
                _verdict(same),
                "sha256 matches the manifest" if same else "sha256 differs from the manifest: re-export or re-copy",
            )
        )
    return checks


def check_graphs(root: Path) -> list[Check]:
    """Each image graph run on the reference inputs recorded at export (selfcheck): the right dimension, and the
    same embeddings within its precision's tolerance. int8-static runs on OpenVINO, as the runtime runs it."""
    from edge_search.runtime.model import selfcheck
    from edge_search.runtime.model.openvino_session import openvino_installed
    from edge_search.runtime.model.session import open_session

    try:
        bundle = Bundle.load(root)
    except EdgeSearchError:
        return []
    checks = []
    for precision, spec in bundle.manifest.files.items():
        name = f"graph {precision}"
        device = "openvino" if precision == "int8-static" else "cpu"
        if device == "openvino" and not openvino_installed():
            checks.append(Check(name, "info", "not run: int8-static runs on OpenVINO, which is not installed"))
            continue
        try:
            session, _ = open_session(bundle, device=device, precision=precision)
            lowest = selfcheck.check(session, bundle, spec)
        except ProviderError as exc:
            checks.append(Check(name, "fail", f"does not start: {exc.reason}"))
            continue
        except EdgeSearchError as exc:
            checks.append(Check(name, "fail", str(exc)))
            continue
        dim = bundle.manifest.embedding_dim
        checks.append(
            Check(name, "ok", f"{dim} dimensions; reference embeddings reproduced (cosine >= {lowest:.5f})")
            if lowest is not None
            else Check(name, "info", f"{dim} dimensions; no reference embeddings recorded (exported before they were)")
        )
    return checks


def check_index(directory: Path) -> list[Check]:
    try:
        catalog = Catalog.open(directory, create=False)
    except EdgeSearchError as exc:
        return [Check("catalog", "fail", str(exc))]
    try:
        integrity = catalog.integrity_check()
        checks = [Check("catalog", _verdict(integrity == "ok"), f"PRAGMA integrity_check: {integrity}")]
        duplicates = catalog.duplicate_paths()
        checks.append(
            Check(
                "catalog rows",
                _verdict(duplicates == 0),
                f"{catalog.count()} indexed, {catalog.count('failed')} failed, {duplicates} duplicate paths",
            )
        )
        meta = catalog.index_meta()
        if not meta.index_file:
            checks.append(Check("index file", "fail", "no generation published yet: run `edge-search index`"))
            return checks
        try:
            index = vi.load_verified(directory / meta.index_file, meta.index_sha256 or "", view=True, full_hash=True)
        except EdgeSearchError as exc:
            checks.append(
                Check("index file", "fail", f"{exc} The next query or index run rebuilds it from the catalog.")
            )
            return checks
        want = catalog.ok_ids()
        have = (
            set(np.asarray(index.keys, dtype=np.uint64).tolist()) if len(index) else set()
        )  # one call, not O(n) per key
        same = want == have
        checks.append(
            Check(
                "index file",
                _verdict(same),
                f"{meta.index_file}: sha256 ok, {len(have)} vectors"
                + (
                    ""
                    if same
                    else f"; {len(want - have)} missing, {len(have - want)} extra versus the catalog (the next "
                    "index run reconciles)"
                ),
            )
        )
        return checks
    finally:
        catalog.close()


def check_providers(root: Path, retune: bool = False) -> list[Check]:
    from edge_search.runtime.model.openvino_session import openvino_installed
    from edge_search.runtime.model.providers import CPU, CUDA, OPENVINO_EXTRA, TENSORRT, load_onnxruntime
    from edge_search.runtime.model.session import auto_choices, plan_label, tuning_of

    ort = load_onnxruntime()

    try:
        bundle = Bundle.load(root)
    except EdgeSearchError:
        return []
    checks = []
    available = ort.get_available_providers()
    for device, provider in (("tensorrt", TENSORRT), ("cuda", CUDA), ("cpu", CPU)):
        absent: Status = "fail" if device == "cpu" else "info"  # no GPU here is a fact, not a fault
        if provider not in available:
            checks.append(Check(f"provider {device}", absent, f"{provider} is not in this onnxruntime build"))
            continue
        checks.append(_starts(bundle, device, absent))
    # OpenVINO is optional: its absence is a fact (info), a broken install a failure worth knowing
    if openvino_installed():
        checks.append(_starts(bundle, "openvino", "fail"))
    else:
        checks.append(Check("provider openvino", "info", f"not installed ({OPENVINO_EXTRA})"))
    measured = tuning_of(bundle, None, measure=retune, again=retune)
    for trial in measured.trials if measured is not None else ():
        checks.append(Check(f"engine {trial.candidate.label}", "info", trial.summary()))
    for job, plan in auto_choices(bundle).items():
        checks.append(Check(f"auto for {job}", "info", f"{plan_label(plan)} · {plan.why}"))
    return checks


def _starts(bundle: Bundle, device: str, failed: Status) -> Check:
    """Whether a session of the bundle starts on `device`; `failed` is the status when it does not."""
    from edge_search.runtime.model.session import open_session

    try:
        session, _ = open_session(bundle, device=device)
        return Check(f"provider {device}", "ok", f"starts: {session.provider} with {session.precision}")
    except ProviderError as exc:  # its reason, not the advice for a `--device` nobody gave here
        return Check(f"provider {device}", failed, f"does not start: {exc.reason}")
    except EdgeSearchError as exc:
        return Check(f"provider {device}", failed, f"does not start: {exc}")
