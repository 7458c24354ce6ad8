"""OpenVINO as a device: when `auto` tries it, what an explicit `--device openvino` demands, and that a missing
or broken OpenVINO install costs a note (auto) or one paragraph (explicit), never a traceback. The graph it runs
is measured on trained weights in tests/export/test_trained.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import cli_env, edge_search
from conftest import photo as new_photo
from edge_search.runtime.errors import ProviderError, UsageError
from edge_search.runtime.host import STAND_IN_VARIABLE, STAND_INS
from edge_search.runtime.model import providers
from edge_search.runtime.model.providers import CPU, CUDA, resolve

WITH_STATIC = ("fp32", "fp16", "int8", "int8-static")
WITHOUT_STATIC = ("fp32", "fp16", "int8")


def plans(*args, **kwargs) -> list[tuple[str, str]]:
    return [(p.device, p.precision) for p in resolve(*args, **kwargs)]


def test_auto_tries_openvino_with_its_own_graph_then_onnxruntime_int8():
    assert plans("auto", "auto", [CPU], WITH_STATIC, openvino_installed=True) == [
        ("openvino", "int8-static"),
        ("cpu", "int8"),
    ]


def test_auto_tries_cuda_before_openvino():
    assert [d for d, _ in plans("auto", "auto", [CUDA, CPU], WITH_STATIC, openvino_installed=True)] == [
        "cuda",
        "openvino",
        "cpu",
    ]


def test_auto_keeps_onnxruntime_where_openvino_or_its_graph_is_missing():
    assert plans("auto", "auto", [CPU], WITH_STATIC, openvino_installed=False) == [("cpu", "int8")]
    assert plans("auto", "auto", [CPU], WITHOUT_STATIC, openvino_installed=True) == [("cpu", "int8")]


def test_auto_follows_the_job_openvino_for_long_jobs_onnxruntime_for_one_shot_commands():
    long_job = resolve("auto", "auto", [CPU], WITH_STATIC, openvino_installed=True)
    one_shot = resolve("auto", "auto", [CPU], WITH_STATIC, openvino_installed=True, one_shot=True)
    assert [(p.device, p.precision) for p in one_shot] == [("cpu", "int8")]
    assert (long_job[0].device, long_job[0].why) == ("openvino", providers.WHY_OPENVINO)
    assert one_shot[0].why == providers.WHY_ONE_SHOT


def test_on_a_cpu_without_int8_dot_products_every_job_stays_on_onnxruntime_int8():
    for one_shot in (False, True):
        (plan,) = resolve("auto", "auto", [CPU], WITH_STATIC, openvino_installed=True, one_shot=one_shot,
                          int8_dot_products=False)  # fmt: skip
        assert (plan.device, plan.precision) == ("cpu", "int8")
        assert plan.why == (providers.WHY_ONE_SHOT if one_shot else providers.WHY_NO_INT8_DOT)


def test_auto_says_why_it_kept_onnxruntime():
    (without_openvino,) = resolve("auto", "auto", [CPU], WITH_STATIC, openvino_installed=False)
    (without_graph,) = resolve("auto", "auto", [CPU], WITHOUT_STATIC, openvino_installed=True)
    assert without_openvino.why == providers.WHY_NO_OPENVINO
    assert without_graph.why == providers.WHY_NO_STATIC and "export-model" in without_graph.why
    assert resolve("cpu", "auto", [CPU], WITH_STATIC)[0].why.startswith("--device cpu")


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


def test_a_broken_openvino_install_falls_back_to_onnxruntime_with_a_note(
    bundle_claiming_int8_static, broken_openvino, tmp_path, photo_dir
):
    env = cli_env(tmp_path, bundle_claiming_int8_static, EDGE_SEARCH_DEVICE="auto", PYTHONPATH=str(broken_openvino))
    env[STAND_IN_VARIABLE] = "vnni"  # a CPU where auto tries OpenVINO for indexing, whatever this one is
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


@pytest.mark.parametrize(  # the two outcomes in the fast tier, every class in the slow one
    "cpu_class", ["avx2", "vnni", *(pytest.param(c, marks=pytest.mark.slow) for c in ("amx", "aarch64"))]
)
def test_the_engine_follows_the_job_and_the_cpu_class_through_the_installed_cli_and_info_says_why(
    bundle_claiming_int8_static, tmp_path, photo_dir, cpu_class
):
    """Each CPU class's choice (stand-in facts, CONTRIBUTING.md "CPU classes"), made on whatever CPU runs this."""
    env = cli_env(tmp_path, bundle_claiming_int8_static, EDGE_SEARCH_DEVICE="auto", **{STAND_IN_VARIABLE: cpu_class})
    fast_here = STAND_INS[cpu_class].int8_dot_products()  # OpenVINO indexes faster only with VNNI/AMX
    assert fast_here == (cpu_class in ("vnni", "amx"))
    long_engine, long_why = ("OpenVINO int8-static", providers.WHY_OPENVINO) if fast_here else (
        "onnxruntime CPU int8", providers.WHY_NO_INT8_DOT)  # fmt: skip
    indexed = edge_search("index", str(photo_dir), "--json", env=env)
    assert indexed.returncode == 0, indexed.stderr
    assert json.loads(indexed.stdout)["provider"] == ("OpenVINO CPU" if fast_here else "CPUExecutionProvider")
    assert long_why in edge_search("index", str(photo_dir), env=env).stderr  # the progress line
    photo = tmp_path / "new.jpg"  # not in the index: the model embeds it (an indexed photo needs none)
    new_photo(31337).save(photo)
    queried = edge_search("query", str(photo), "--json", env=env)
    assert queried.returncode == 0, queried.stderr
    assert (json.loads(queried.stdout)["provider"], json.loads(queried.stdout)["precision"]) == (
        "CPUExecutionProvider",
        "int8",
    )
    info = edge_search("info", "--json", env=env)
    assert json.loads(info.stdout)["engines"] == {
        "index, serve, watch": f"{long_engine} · {long_why}",
        "query, embed": f"onnxruntime CPU int8 · {providers.WHY_ONE_SHOT}",
    }
    verified = edge_search("verify", env=env)
    assert "auto for query, embed" in verified.stdout + verified.stderr
