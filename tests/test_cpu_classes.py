"""The CPU class decides which int8 weights export writes, and each class's decision is tested on any machine through
stand-in CPU facts (EDGE_SEARCH_CPU_CLASS, CONTRIBUTING.md "CPU classes"). A stand-in changes the decision only; the
arithmetic, and so which graphs pass their gates, stays the real CPU's. Which engine `auto` runs is measured, not
read from flags: each class's measurement is stood in for in tests/model/test_openvino.py."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import console_script
from edge_search.runtime.errors import UsageError
from edge_search.runtime.host import STAND_IN_VARIABLE, STAND_INS, CpuFacts, cpu_facts, real_cpu_facts

SATURATING = {"avx2"}  # AVX2 without VNNI: u8 x s8 products add into saturating 16-bit sums


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"sse4_2", "avx2", "fma"}, "avx2"),
        ({"avx2", "avx512f", "avx512_vnni"}, "vnni"),
        ({"avx2", "avx_vnni"}, "vnni"),  # Alder Lake's VEX-encoded VNNI
        ({"avx2", "avx512_vnni", "amx_int8", "amx_bf16"}, "amx"),
        ({"sse4_2"}, "x86"),
    ],
)
def test_the_class_is_read_from_the_flags_that_decide_it(flags, expected):
    assert CpuFacts("x86_64", frozenset(flags)).cpu_class == expected


@pytest.mark.parametrize("cpu_class", sorted(STAND_INS))
def test_a_stand_in_class_replaces_this_cpus_facts_for_the_choices(cpu_class, monkeypatch):
    monkeypatch.setenv(STAND_IN_VARIABLE, cpu_class)
    facts = cpu_facts()
    assert (facts.cpu_class, facts.stand_in) == (cpu_class, cpu_class)
    assert facts.int8_kernels_saturate() == (cpu_class in SATURATING)
    assert f"stand-in for {cpu_class}" in facts.describe()
    assert real_cpu_facts().stand_in is None  # the arithmetic's CPU is still this one


def test_without_a_stand_in_the_choices_see_this_cpu(monkeypatch):
    monkeypatch.delenv(STAND_IN_VARIABLE, raising=False)
    assert cpu_facts() == real_cpu_facts()
    assert cpu_facts().describe().endswith("this CPU")


def test_an_unknown_stand_in_class_is_a_usage_error_naming_the_classes(monkeypatch):
    monkeypatch.setenv(STAND_IN_VARIABLE, "pentium")
    with pytest.raises(UsageError, match="avx2, vnni, amx, aarch64"):
        cpu_facts()


def test_export_model_refuses_an_unknown_stand_in_class_in_one_line_with_exit_2(tmp_path, tiny_checkpoint):
    env = {**os.environ, STAND_IN_VARIABLE: "pentium"}
    result = subprocess.run(
        [console_script("export-model"), "--model", str(tiny_checkpoint), "--out", str(tmp_path / "b")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert STAND_IN_VARIABLE in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "b").exists()


def _matmul_weight_types(graph_path) -> set[str]:
    """The element types of the int8 graph's quantized weight initialisers (uint8 or int8)."""
    model = onnx.load(str(graph_path))
    types = {numpy_helper.to_array(t).dtype.name for t in model.graph.initializer if t.name.endswith("_quantized")}
    return types & {np.dtype("int8").name, np.dtype("uint8").name}


@pytest.mark.parametrize("cpu_class", ["avx2", "vnni"])
def test_export_writes_unsigned_int8_weights_only_for_a_cpu_whose_int8_kernels_saturate(
    cpu_class, tiny_checkpoint, tmp_path, monkeypatch
):
    """The two outcomes (AMX and Arm decide as VNNI does: `test_a_stand_in_class_...`), through the real export."""
    from edge_search.export.pipeline import export_bundle

    monkeypatch.setenv(STAND_IN_VARIABLE, cpu_class)
    export_bundle(model=str(tiny_checkpoint), out=tmp_path / "b", precisions=("fp32", "int8"))
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    unsigned = cpu_class in SATURATING
    weights = manifest["files"]["int8"]["quantization"]["weights"]
    assert weights.startswith("uint8 per output channel" if unsigned else "int8 per output channel")
    assert _matmul_weight_types(tmp_path / "b" / "model.int8.onnx") == {"uint8" if unsigned else "int8"}
