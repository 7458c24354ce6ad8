"""Which engine `auto` runs on the CPU: what it measured on this machine (`model.tuning`), per kind of job, with
stand-in measurements of each CPU class so that every class's choice is tested on any machine; what an explicit
`--device openvino` demands; and that a missing or broken OpenVINO install costs a note (auto) or one paragraph
(explicit), never a traceback. The graphs it runs are measured on trained weights in tests/export/test_trained.py."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import cli_env, edge_search
from conftest import photo as new_photo
from edge_search.runtime.errors import ProviderError, UsageError
from edge_search.runtime.model import providers, tuning
from edge_search.runtime.model.providers import CPU, CUDA, resolve

WITH_STATIC = ("fp32", "fp16", "int8", "int8-static")
WITHOUT_STATIC = ("fp32", "fp16", "int8")


# Stand-in measurements (`model.tuning`) of three CPU classes, as the issue and docs/benchmarks.md measured them:
# images/s at the indexing batch and seconds to a first answer, per engine. Every class is tested on any machine.
OV_STATIC, OV_FP32, OV_BF16 = (
    tuning.Candidate("openvino", "int8-static"),
    tuning.Candidate("openvino", "fp32"),
    tuning.Candidate("openvino", "fp32", bf16=True),
)
ORT_INT8, ORT_FP32 = tuning.Candidate("cpu", "int8"), tuning.Candidate("cpu", "fp32")
MEASURED = {  # class -> {candidate: (images/s, first answer s, min cosine)}
    "avx2": {ORT_INT8: (10.9, 0.38, 0.998), ORT_FP32: (6.1, 0.41, 1.0), OV_STATIC: (8.3, 0.71, 0.997),
             OV_FP32: (6.0, 0.66, 1.0)},
    "vnni": {ORT_INT8: (10.9, 0.38, 0.998), ORT_FP32: (6.2, 0.40, 1.0), OV_STATIC: (12.7, 0.70, 0.997),
             OV_FP32: (6.3, 0.66, 1.0)},
    "amx": {ORT_INT8: (35.2, 0.35, 0.998), ORT_FP32: (11.0, 0.40, 1.0), OV_STATIC: (40.8, 0.61, 0.997),
            OV_FP32: (11.2, 0.60, 1.0), OV_BF16: (44.8, 0.62, 0.9995)},
}  # fmt: skip
CHOSEN = {  # class -> (long job, one-shot job)
    "avx2": (("cpu", "int8", False), ("cpu", "int8", False)),
    "vnni": (("openvino", "int8-static", False), ("cpu", "int8", False)),
    "amx": (("openvino", "fp32", True), ("cpu", "int8", False)),
}


def measured(cpu_class: str, **changed: tuple[float, float, float]) -> tuning.Tuning:
    table = {**MEASURED[cpu_class], **{getattr(sys.modules[__name__], k): v for k, v in changed.items()}}
    return tuning.Tuning(tuple(tuning.Trial(c, ips, first, cos) for c, (ips, first, cos) in table.items()), "then")


def plans(*args, **kwargs) -> list[tuple[str, str]]:
    return [(p.device, p.precision) for p in resolve(*args, **kwargs)]


@pytest.mark.parametrize("cpu_class", sorted(MEASURED))
def test_auto_takes_the_engine_measured_fastest_for_each_kind_of_job(cpu_class):
    table = measured(cpu_class)
    for one_shot, expected in zip((False, True), CHOSEN[cpu_class]):
        first, *rest = resolve("auto", "auto", [CPU], WITH_STATIC, openvino_installed=True, one_shot=one_shot,
                               measured=table)  # fmt: skip
        assert (first.device, first.precision, first.bf16) == expected
        assert first.why.startswith("auto: measured fastest on this machine")
        if first.device == "openvino":  # onnxruntime stays behind it, should OpenVINO not start
            assert [(p.device, p.precision, p.why) for p in rest] == [("cpu", "int8", providers.WHY_FALLBACK)]


def test_a_fast_engine_that_fails_its_fidelity_check_is_not_taken():
    table = measured("amx", OV_BF16=(44.8, 0.62, 0.9962))  # bf16 below its 0.999 gate on these weights
    (first, _fallback) = resolve("auto", "auto", [CPU], WITH_STATIC, openvino_installed=True, measured=table)
    assert (first.device, first.precision, first.bf16) == ("openvino", "int8-static", False)


def test_unmeasured_or_nothing_passing_keeps_onnxruntime_and_says_why():
    (unmeasured,) = resolve("auto", "auto", [CPU], WITH_STATIC, openvino_installed=True)
    assert (unmeasured.device, unmeasured.precision, unmeasured.why) == ("cpu", "int8", providers.WHY_UNMEASURED)
    failing = tuning.Tuning((tuning.Trial(ORT_INT8, 10.0, 0.3, 0.5),), "then")
    (none_passed,) = resolve("auto", "auto", [CPU], WITH_STATIC, openvino_installed=True, measured=failing)
    assert none_passed.why == providers.WHY_NONE_PASSED
    (gone,) = resolve("auto", "auto", [CPU], WITH_STATIC, openvino_installed=False, measured=measured("vnni"))
    assert (gone.device, gone.why) == ("cpu", providers.WHY_NO_OPENVINO)


def test_auto_tries_cuda_before_the_measured_cpu_engine():
    got = resolve("auto", "auto", [CUDA, CPU], WITH_STATIC, openvino_installed=True, measured=measured("vnni"))
    assert [p.device for p in got] == ["cuda", "openvino", "cpu"]


def test_an_explicit_precision_or_device_is_not_overridden_by_the_measurement():
    table = measured("amx")
    assert plans("auto", "fp32", [CPU], WITH_STATIC, openvino_installed=True, measured=table) == [("cpu", "fp32")]
    assert plans("cpu", "auto", [CPU], WITH_STATIC, measured=table) == [("cpu", "int8")]


def test_explicit_openvino_runs_fp32_when_the_bundle_has_no_int8_static_graph():
    assert plans("openvino", "auto", [CPU], WITHOUT_STATIC, openvino_installed=True) == [("openvino", "fp32")]


def test_explicit_openvino_without_openvino_names_the_extra():
    with pytest.raises(ProviderError, match=r"edge-search\[openvino\]"):
        resolve("openvino", "auto", [CPU], WITH_STATIC, openvino_installed=False)


def test_openvino_refuses_the_dynamic_int8_graph_it_cannot_read():
    with pytest.raises(UsageError, match="int8-static"):
        resolve("openvino", "int8", [CPU], WITH_STATIC, openvino_installed=True)


def test_int8_static_runs_on_onnxruntime_too_when_asked_for():
    assert plans("cpu", "int8-static", [CPU], WITH_STATIC) == [("cpu", "int8-static")]


@pytest.fixture
def broken_openvino(tmp_path) -> Path:
    """A folder that shadows the real package with an `openvino` whose import fails like a broken install."""
    shadow = tmp_path / "shadow" / "openvino"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        'raise ImportError("libopenvino.so.2026.4.1: cannot open shared object file: No such file or directory")\n'
    )
    return shadow.parent


@pytest.fixture
def bundle_claiming_int8_static(tiny_bundle, tmp_path) -> Path:
    """The tiny bundle with its fp32 graph also listed as int8-static (only which device starts is tested)."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    shutil.copyfile(bundle / "model.fp32.onnx", bundle / "model.int8-static.onnx")
    manifest["files"]["int8-static"] = {**manifest["files"]["fp32"], "precision": "int8-static"}
    manifest["files"]["int8-static"]["path"] = "model.int8-static.onnx"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle


def stand_in_measurement(bundle: Path, cache: Path, cpu_class: str, monkeypatch) -> None:
    """Writes what `tuning` would have measured on a CPU of `cpu_class` into the cache a CLI run under
    `cli_env` reads (XDG_CACHE_HOME=cache), keyed for this machine: the command then measures nothing."""
    from edge_search.runtime.model.bundle import Bundle
    from edge_search.runtime.model.session import tuning_of

    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    real = tuning_of(Bundle.load(bundle), None, measure=False)
    assert real is None  # nothing measured here yet
    key = _key(Bundle.load(bundle))
    tuning.remember(key, measured(cpu_class))


def _key(bundle) -> str:
    import importlib.metadata

    import onnxruntime

    from edge_search.runtime.host import default_threads

    versions = {"onnxruntime": onnxruntime.__version__, "openvino": importlib.metadata.version("openvino")}
    return tuning.machine_key(bundle.identity, default_threads(), versions)


def test_a_broken_openvino_install_falls_back_to_onnxruntime_with_a_note(
    bundle_claiming_int8_static, broken_openvino, tmp_path, photo_dir, monkeypatch
):
    stand_in_measurement(bundle_claiming_int8_static, tmp_path / "cache", "vnni", monkeypatch)  # OpenVINO fastest
    env = cli_env(tmp_path, bundle_claiming_int8_static, EDGE_SEARCH_DEVICE="auto", PYTHONPATH=str(broken_openvino))
    result = edge_search("index", str(photo_dir), "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert "OpenVINO cannot be imported" in result.stderr and "using onnxruntime on the CPU" in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout)["provider"] == "CPUExecutionProvider"


def test_an_explicit_openvino_that_cannot_start_is_one_paragraph_and_exit_5(
    bundle_claiming_int8_static, broken_openvino, tmp_path, photo_dir
):
    env = cli_env(tmp_path, bundle_claiming_int8_static, PYTHONPATH=str(broken_openvino))
    result = edge_search("index", str(photo_dir), "--device", "openvino", env=env)
    assert result.returncode == 5
    assert "OpenVINO cannot be imported" in result.stderr and "edge-search[openvino]" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 3


PROVIDERS = {"cpu": "CPUExecutionProvider", "openvino": "OpenVINO CPU"}


@pytest.mark.parametrize(  # the avx2 and amx outcomes in the fast tier, every class in the slow one
    "cpu_class", ["avx2", "amx", pytest.param("vnni", marks=pytest.mark.slow)]
)
def test_the_engine_follows_the_measurement_and_the_job_through_the_installed_cli_and_info_says_why(
    bundle_claiming_int8_static, tmp_path, photo_dir, cpu_class, monkeypatch
):
    """Each CPU class's measurement (stand-in timings), acted on by the real CLI on whatever CPU runs this."""
    stand_in_measurement(bundle_claiming_int8_static, tmp_path / "cache", cpu_class, monkeypatch)
    env = cli_env(tmp_path, bundle_claiming_int8_static, EDGE_SEARCH_DEVICE="auto")
    (long_device, long_precision, bf16), _ = CHOSEN[cpu_class]
    indexed = edge_search("index", str(photo_dir), "--json", env=env)
    assert indexed.returncode == 0, indexed.stderr
    provider = PROVIDERS[long_device] + (" bf16" if bf16 else "")
    assert (json.loads(indexed.stdout)["provider"], json.loads(indexed.stdout)["precision"]) == (
        provider,
        long_precision,
    )
    assert "measured fastest on this machine" in edge_search("index", str(photo_dir), env=env).stderr
    photo = tmp_path / "new.jpg"  # not in the index: the model embeds it (an indexed photo needs none)
    new_photo(31337).save(photo)
    queried = edge_search("query", str(photo), "--json", env=env)
    assert queried.returncode == 0, queried.stderr
    assert (json.loads(queried.stdout)["provider"], json.loads(queried.stdout)["precision"]) == (
        "CPUExecutionProvider",
        "int8",
    )
    info = json.loads(edge_search("info", "--json", env=env).stdout)
    assert all("measured fastest on this machine" in why for why in info["engines"].values())
    assert {t["engine"] for t in info["engine_trials"]} == {c.label for c in MEASURED[cpu_class]}
    verified = edge_search("verify", env=env)
    assert "auto for query, embed" in verified.stdout and "engine onnxruntime CPU int8" in verified.stdout


def test_auto_measures_the_engines_once_announces_it_and_verify_retune_measures_again(
    bundle_claiming_int8_static, tmp_path, photo_dir
):
    """For real, on this machine: every engine the bundle can run is timed and checked, once."""
    env = cli_env(tmp_path, bundle_claiming_int8_static, EDGE_SEARCH_DEVICE="auto")
    first = edge_search("index", str(photo_dir), "--json", env=env)
    assert first.returncode == 0, first.stderr
    assert "measuring this machine's engines" in first.stderr
    trials = json.loads(edge_search("info", "--json", env=env).stdout)["engine_trials"]
    engines = {t["engine"] for t in trials}
    assert {"onnxruntime CPU int8", "onnxruntime CPU fp32", "OpenVINO int8-static", "OpenVINO fp32"} <= engines
    assert all(t["images_per_s"] > 0 and t["first_answer_s"] > 0 and t["error"] is None for t in trials)
    chosen = max((t for t in trials if t["passes"]), key=lambda t: t["images_per_s"])
    provider = PROVIDERS[chosen["device"]] + (" bf16" if chosen["bf16"] else "")
    assert (json.loads(first.stdout)["provider"], json.loads(first.stdout)["precision"]) == (
        provider,
        chosen["precision"],
    )
    again = edge_search("index", str(photo_dir), env=env)
    assert "measuring" not in again.stderr  # cached for this machine and bundle
    retuned = edge_search("verify", "--retune", env=env)
    assert "measuring this machine's engines" in retuned.stderr and "engine OpenVINO fp32" in retuned.stdout


def test_a_measurement_made_on_a_busy_machine_is_made_again_once_it_is_quiet(monkeypatch):
    """Other work on the CPUs skews a measurement: it is used, and kept marked busy, until a quiet moment."""
    import os

    busy = measured("vnni")
    busy = tuning.Tuning(busy.trials, busy.measured_at, busy=True)
    assert tuning.Tuning.from_dict(busy.as_dict()) == busy  # cached with the mark
    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 1.0, 1.0))  # far more than this machine's CPUs
    assert tuning.machine_busy() and not tuning.stale(busy)  # still busy: no point in measuring again now
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert not tuning.machine_busy() and tuning.stale(busy)
    assert not tuning.stale(measured("vnni"))  # a quiet measurement is kept
