"""The GPU acceptance run's parts that need no GPU: its options, the install plan, the dry run and the report.
(On a machine with an NVIDIA GPU the same command measures; README says how to run it.)"""

from __future__ import annotations

import json

import pytest

from benchmarks import gpu_check


def test_batches_are_whole_numbers_or_a_usage_error(capsys):
    assert gpu_check.parse(["--bundle", "b", "--batches", "1,16"]).batches == [1, 16]
    with pytest.raises(SystemExit) as refused:
        gpu_check.parse(["--bundle", "b", "--batches", "1,x"])
    assert refused.value.code == 2 and "--batches takes whole numbers" in capsys.readouterr().err


def test_the_install_plan_joins_split_wheels_then_installs_them_without_dependencies(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for part in ("aa", "ab"):
        (wheels / f"onnxruntime_gpu-1.31.1-cp311-manylinux_2_28_x86_64.whl.part-{part}").write_bytes(b"x")
    (wheels / "tensorrt_cu12-10.13.0-py3-none-manylinux_2_28_x86_64.whl").write_bytes(b"x")
    plan = gpu_check.install_plan(wheels, tmp_path / "site", have_cuda=False)
    join, install = plan
    assert join[:2] == ["sh", "-c"] and join[2].endswith(
        "> " + str(wheels / "onnxruntime_gpu-1.31.1-cp311-manylinux_2_28_x86_64.whl")
    )
    assert install[1:7] == ["-m", "pip", "install", "--no-deps", "--target", str(tmp_path / "site")]
    assert [p.rsplit("/", 1)[-1] for p in install[7:]] == [
        "onnxruntime_gpu-1.31.1-cp311-manylinux_2_28_x86_64.whl",
        "tensorrt_cu12-10.13.0-py3-none-manylinux_2_28_x86_64.whl",
    ]
    assert gpu_check.install_plan(wheels, tmp_path / "site", have_cuda=True) == []
    assert gpu_check.install_plan(None, tmp_path / "site", have_cuda=False) == []


def test_a_dry_run_writes_the_plan_and_says_nothing_was_measured(tiny_bundle, tmp_path):
    folder = gpu_check.main(["--bundle", str(tiny_bundle), "--dry-run", "--out", str(tmp_path)])
    report = json.loads((folder / "report.json").read_text())
    assert report["status"] == "Dry run: nothing measured." and "throughput" not in report
    assert json.loads((folder / "run.json").read_text())["machine"]["cores"] >= 1
    assert (folder / "report.md").read_text().startswith("# GPU acceptance run")


def test_the_report_shows_parity_throughput_auto_and_indexing():
    report = {
        "date": "2026-12-02",
        "gpu": "NVIDIA H200, 580.65",
        "status": "Measured.",
        "install_plan": [],
        "parity": [
            {
                "device": "cuda",
                "precision": "fp16",
                "status": "ok",
                "open_s": 1.2,
                "min_cosine": 0.9998,
                "mean_cosine": 0.99995,
            },
            {"device": "tensorrt", "precision": "fp32", "status": "not run: no TensorRT"},
        ],
        "throughput": [
            {
                "device": "cuda",
                "precision": "fp16",
                "batch": 64,
                "images_per_s": 2100.0,
                "p50_ms": 30.5,
                "gpu_memory_mb": 900.0,
            }
        ],
        "auto": {"device": "cuda", "precision": "fp16", "why": "auto: CUDA"},
        "end_to_end": {
            "status": "ok",
            "images": 131,
            "seconds": 9.0,
            "images_per_s": 14.6,
            "provider": "CUDAExecutionProvider",
            "precision": "fp16",
        },
    }
    text = gpu_check.markdown(report)
    assert "| cuda | fp16 | ok | 1.2 | 0.9998 | 0.99995 |" in text
    assert "| tensorrt | fp32 | not run: no TensorRT |  |  |  |" in text
    assert "| cuda | fp16 | 64 | 2100.0 | 30.5 | 900.0 |" in text
    assert "`auto` chose cuda fp16" in text and "131 photos with `--device auto`: 14.6 images/s" in text
