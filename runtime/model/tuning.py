"""`auto` on the CPU chooses its engine by measuring this machine, not by rules written on others.

Which engine is fastest depends on the CPU in ways flags do not tell: on an AMX Xeon OpenVINO computing the fp32
graph in bf16 beat every int8 path (44.8 images/s against 40.8 for OpenVINO int8-static, 35.2 for onnxruntime
int8), on an AVX2-only EPYC onnxruntime's int8 beat OpenVINO's (0.76x), and a cold query pays OpenVINO's import
and compile. So the first time a bundle runs under `auto` on a machine, every CPU engine x graph it can run is
timed for each kind of job (throughput at the indexing batch for `index`, `serve`, `watch`; for `query`,
`embed` what a new process pays to import the engine, open the graph and answer once, `cold_start`), each is
checked against the bundle's fp32 reference embeddings (its gate: fp32 0.9999, bf16 0.999, int8 0.995 cosine),
and the fastest that passes is kept, in the user's cache, keyed by the CPU (model and flags), the engines'
versions, the bundle's identity and the thread count. The trial takes under a minute, once (26 s for ViT-B/16
on 2 cores), and is announced; `edge-search verify --retune` runs it again; `info` shows the table.
`--device` and `--precision` still choose for themselves. GPUs (CUDA, TensorRT) are tried before any of this.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_search.runtime.errors import EdgeSearchError
from edge_search.runtime.files import cache_dir, write_atomically
from edge_search.runtime.host import default_threads, real_cpu_facts

LONG, ONE_SHOT = "index, serve, watch", "query, embed"  # the two kinds of job, as `info` names them
JOBS = {LONG: False, ONE_SHOT: True}  # job -> one_shot
BATCH = 8  # the indexer's batch
ROUNDS = 3
GATE = {"fp32": 0.9999, "bf16": 0.999, "fp16": 0.999, "int8": 0.995, "int8-static": 0.995}
BF16_FLAGS = {"avx512_bf16", "amx_bf16"}
CACHE_NAME = "engine-choices.json"
SCHEMA = 1
# Who is told when a trial starts (it takes seconds): the command line registers a stderr line; library code
# itself never prints.
ANNOUNCERS: list[Callable[[str], None]] = []


@dataclass(frozen=True)
class Candidate:
    """One CPU engine and graph: onnxruntime ("cpu") or OpenVINO, and the bundle's precision it runs; `bf16`:
    OpenVINO computing the fp32 graph in bfloat16 (on CPUs that have it)."""

    device: str
    precision: str
    bf16: bool = False

    @property
    def label(self) -> str:
        engine = "OpenVINO" if self.device == "openvino" else "onnxruntime CPU"
        return f"{engine} {'bf16 (fp32 graph)' if self.bf16 else self.precision}"

    @property
    def gate(self) -> float:
        return GATE["bf16" if self.bf16 else self.precision]


@dataclass(frozen=True)
class Trial:
    """One candidate, measured: images per second at the indexing batch, seconds to open and answer once, and the
    lowest cosine of its embeddings of the reference inputs to the bundle's fp32 ones (None: not measured)."""

    candidate: Candidate
    images_per_s: float = 0.0
    first_answer_s: float = float("inf")
    min_cosine: float | None = None
    error: str | None = None

    @property
    def passes(self) -> bool:
        return self.error is None and (self.min_cosine is None or self.min_cosine >= self.candidate.gate)

    def summary(self) -> str:
        """'41.2 images/s · first answer 0.35 s · cosine 0.99991 to fp32 · passes': one measured engine, for people."""
        if self.error:
            return f"cannot run here: {self.error}"
        cosine = "" if self.min_cosine is None else f" · cosine {self.min_cosine:.5f} to fp32"
        verdict = "passes" if self.passes else f"below its {self.candidate.gate} gate: not used"
        return f"{self.images_per_s:.1f} images/s · first answer {self.first_answer_s:.2f} s{cosine} · {verdict}"

    def speed(self, job: str) -> float:
        """Higher is better, for either kind of job."""
        return self.images_per_s if not JOBS[job] else 1.0 / self.first_answer_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "engine": self.candidate.label,
            **asdict(self.candidate),
            "images_per_s": round(self.images_per_s, 2),
            "first_answer_s": round(self.first_answer_s, 4) if self.first_answer_s != float("inf") else None,
            "min_cosine": None if self.min_cosine is None else round(self.min_cosine, 6),
            "passes": self.passes,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trial:
        first = data.get("first_answer_s")
        return cls(
            Candidate(data["device"], data["precision"], bool(data.get("bf16"))),
            float(data.get("images_per_s") or 0.0),
            float("inf") if first is None else float(first),
            data.get("min_cosine"),
            data.get("error"),
        )


def choose(trials: Sequence[Trial], job: str) -> Trial | None:
    """The fastest trial that passes its gate, for `job`; None when none does."""
    passing = [trial for trial in trials if trial.passes]
    return max(passing, key=lambda trial: trial.speed(job)) if passing else None


@dataclass(frozen=True)
class Tuning:
    """The trials of one bundle on one machine, and when they were measured."""

    trials: tuple[Trial, ...]
    measured_at: str
    busy: bool = False  # other work held the CPUs while it was measured: measured again once they are quiet

    def choice(self, job: str) -> Trial | None:
        return choose(self.trials, job)

    def why(self, job: str) -> str:
        """'auto: measured fastest here for index, serve, watch (41.2 images/s; onnxruntime CPU int8 35.1)'."""
        chosen = self.choice(job)
        if chosen is None:
            return "auto: no CPU engine passed its check when measured here"
        others = sorted((t for t in self.trials if t.passes and t is not chosen), key=lambda t: -t.speed(job))
        unit = (lambda t: f"{t.first_answer_s:.2f} s") if JOBS[job] else (lambda t: f"{t.images_per_s:.1f} images/s")
        runner_up = f"; {others[0].candidate.label} {unit(others[0])}" if others else ""
        return f"auto: measured fastest on this machine for {job} ({unit(chosen)}{runner_up})"

    def as_dict(self) -> dict[str, Any]:
        trials = [t.as_dict() for t in self.trials]
        return {"schema": SCHEMA, "measured_at": self.measured_at, "busy": self.busy, "trials": trials}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tuning:
        trials = tuple(Trial.from_dict(t) for t in data["trials"])
        return cls(trials, str(data.get("measured_at", "")), bool(data.get("busy", False)))


def candidates(precisions: Sequence[str], openvino_installed: bool) -> list[Candidate]:
    """What this machine can run of a bundle with these graphs: onnxruntime's int8 and fp32, OpenVINO's
    int8-static and fp32, and OpenVINO's bf16 where the CPU computes bfloat16 (AVX512-BF16, AMX)."""
    found = [Candidate("cpu", p) for p in ("int8", "fp32") if p in precisions]
    if openvino_installed:
        found += [Candidate("openvino", p) for p in ("int8-static", "fp32") if p in precisions]
        if "fp32" in precisions and BF16_FLAGS & (real_cpu_facts().flags or frozenset()):
            found.append(Candidate("openvino", "fp32", bf16=True))
    return found


def measure(
    candidate: Candidate,
    open_candidate: Callable[[Candidate], Any],
    pixels: np.ndarray,
    references: np.ndarray | None,
    cold_start: Callable[[Candidate], float] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Trial:
    """Time one candidate: what a cold query pays for it (`cold_start`: a fresh process importing the engine,
    opening the graph and answering once; without it, opening and answering in this process, where an engine
    already imported looks cheaper than it is), then the best of ROUNDS batches of BATCH after a warm one; and its
    embeddings of the reference inputs `pixels` against `references` (the bundle's fp32 ones)."""
    batch = np.concatenate([pixels] * (BATCH // len(pixels) + 1))[:BATCH]
    try:
        started = clock()
        session = open_candidate(candidate)
        session.run(pixels[:1])
        first = clock() - started if cold_start is None else cold_start(candidate)
        session.run(batch)
        fastest = float("inf")
        for _ in range(ROUNDS):  # the best round: a busy moment on the machine must not decide for good
            started = clock()
            session.run(batch)
            fastest = min(fastest, clock() - started)
        per_s = BATCH / max(fastest, 1e-9)
        got = np.asarray(session.run(pixels), dtype=np.float64)
    except EdgeSearchError as exc:
        return Trial(candidate, error=str(getattr(exc, "reason", exc)))
    except Exception as exc:  # noqa: BLE001 - an engine that cannot run here is a row of the table, not a crash
        return Trial(candidate, error=(str(exc).strip().splitlines() or [type(exc).__name__])[0][:200])
    cosine = None
    if references is not None:
        got /= np.linalg.norm(got, axis=1, keepdims=True)
        cosine = float((got * references).sum(axis=1).min())
    return Trial(candidate, per_s, first, cosine)


def machine_key(bundle_identity: str, threads: int, versions: dict[str, str | None]) -> str:
    """What a measurement holds for: this CPU (model name and flags), the engines' versions, the bundle, the
    threads."""
    facts = real_cpu_facts()
    cpu = [platform.machine(), _cpu_model(), sorted(facts.flags or ())]
    text = json.dumps([SCHEMA, cpu, versions, bundle_identity, threads], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            return next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        return ""


def cache_file() -> Path:
    return cache_dir() / CACHE_NAME


def cached(key: str) -> Tuning | None:
    try:
        found = json.loads(cache_file().read_text())[key]
        return Tuning.from_dict(found) if found.get("schema") == SCHEMA else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def remember(key: str, tuning: Tuning) -> None:
    """Keep the measurement for next time (a cache that cannot be written only means measuring again)."""
    try:
        known = json.loads(cache_file().read_text())
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    known[key] = tuning.as_dict()
    try:
        cache_file().parent.mkdir(parents=True, exist_ok=True)
        write_atomically(cache_file(), json.dumps(known, indent=1).encode())
    except OSError:
        pass


def run_trials(
    found: Sequence[Candidate],
    open_candidate: Callable[[Candidate], Any],
    pixels: np.ndarray,
    references: np.ndarray | None,
    cold_start: Callable[[Candidate], float] | None = None,
) -> Tuning:
    busy = machine_busy()
    trials = tuple(measure(c, open_candidate, pixels, references, cold_start) for c in found)
    return Tuning(trials, time.strftime("%Y-%m-%d %H:%M:%S"), busy)


BUSY_LOAD = 0.5  # per CPU this process may use: a 1-minute load average above it means others compete for them


def machine_busy() -> bool:
    """Whether other work keeps this machine's CPUs busy now (the 1-minute load average): a measurement made then
    may pick the wrong engine, so it is used but measured again once the machine is quiet."""
    try:
        return os.getloadavg()[0] > BUSY_LOAD * default_threads()
    except OSError:  # no load average on this platform: taken as quiet
        return False


def stale(found: Tuning | None) -> bool:
    """Whether a cached measurement should be made again now: it was made on a busy machine, and this one is
    quiet."""
    return found is not None and found.busy and not machine_busy()
