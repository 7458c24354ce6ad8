"""The device installs resolve to wheels on the boxes the product targets: Linux aarch64 (a Jetson on JetPack 6,
a Raspberry Pi 5, an ARM NAS) and x86_64, on Python 3.10 (JetPack 6's) and 3.12, asked of the package index as
pip would for that box (`--dry-run --only-binary=:all: --platform --python-version`).

The one exception is pyvips itself, pure Python and published as a source archive only; its binary part,
pyvips-binary, must have a wheel. pip evaluates environment markers for the machine it runs on, not for
`--platform`, so the requirements are taken from pyproject.toml and their markers evaluated here for the target.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import tomllib
from packaging.markers import default_environment
from packaging.requirements import Requirement

from conftest import ROOT

pytestmark = pytest.mark.slow

PYTHONS = ("3.10", "3.12")
ARCHES = ("aarch64", "x86_64")
INSTALLS = (("cpu",), ("cpu", "serve", "video"), ("openvino",))
SOURCE_ONLY = {"pyvips"}  # pure Python, sdist only; pyvips-binary carries the library


def platforms(arch: str) -> list[str]:
    """Every manylinux tag a glibc 2.35 box (Ubuntu 22.04, JetPack 6) accepts; pip does not expand them itself."""
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(35, 16, -1)] + [f"manylinux2014_{arch}"]
    if arch == "x86_64":
        tags += ["manylinux_2_12_x86_64", "manylinux2010_x86_64", "manylinux_2_5_x86_64", "manylinux1_x86_64"]
    return tags


def requirements(extras: tuple[str, ...], arch: str, python: str) -> list[str]:
    """The project's requirements with these extras, for that box: self-references expanded, markers evaluated
    for the target, pyvips[binary] as its binary part."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    target = {**default_environment(), "platform_machine": arch, "python_version": python, "sys_platform": "linux"}
    wanted, seen, todo = [], set(), [*project["dependencies"], *(f"edge-search[{e}]" for e in extras)]
    while todo:
        requirement = Requirement(todo.pop(0))
        if requirement.marker is not None and not requirement.marker.evaluate(target):
            continue
        if requirement.name == "edge-search":
            todo += [
                r for extra in requirement.extras if extra not in seen for r in project["optional-dependencies"][extra]
            ]
            seen |= requirement.extras
            continue
        if requirement.name in SOURCE_ONLY:
            wanted += ["pyvips-binary", "cffi>=1.0"] if "binary" in requirement.extras else ["cffi>=1.0"]
            continue
        requirement.marker = None
        wanted.append(str(requirement))
    return wanted


def resolve(wanted: list[str], arch: str, python: str) -> dict:
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
    command += ["--only-binary=:all:", "--python-version", python, "--implementation", "cp", "--report", "-"]
    for tag in platforms(arch):
        command += ["--platform", tag]
    done = subprocess.run([*command, *wanted], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{arch} Python {python}: {done.stderr.strip()[-800:]}"
    return json.loads(done.stdout)


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("extras", INSTALLS, ids=lambda extras: ",".join(extras))
def test_the_device_install_resolves_to_wheels(extras, arch, python):
    report = resolve(requirements(extras, arch, python), arch, python)
    files = {
        item["metadata"]["name"].lower(): item["download_info"]["url"].rsplit("/", 1)[-1] for item in report["install"]
    }
    assert all(name.endswith(".whl") for name in files.values()), files
    assert {"numpy", "usearch", "pyvips-binary", "tokenizers"} <= set(files)
    engine = "openvino" if extras == ("openvino",) else "onnxruntime"
    assert engine in files and (arch in files[engine] or "universal" in files[engine]), files[engine]


@pytest.mark.parametrize("python", PYTHONS)
def test_the_gpu_extra_on_aarch64_asks_the_public_index_for_no_onnxruntime_gpu(python):
    """PyPI has no aarch64 onnxruntime-gpu: on a Jetson it comes from NVIDIA's index first (README: Jetson)."""
    wanted = requirements(("gpu",), "aarch64", python)
    assert not any(Requirement(r).name == "onnxruntime-gpu" for r in wanted)
    resolve(wanted, "aarch64", python)
    assert any(Requirement(r).name == "onnxruntime-gpu" for r in requirements(("gpu",), "x86_64", python))
