"""The benchmark script cannot rot: its smoke mode runs end to end (timings are never asserted). The original
torch + chromadb pipeline it compares against is a benchmark of its own (`python -m benchmarks`, section
baseline: a virtualenv built once in the user's cache), not part of the tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # tier: CONTRIBUTING.md "The test tiers"

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_writes_all_sections(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--no-baseline", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = tmp_path.iterdir()  # a folder of its own: the report, and what ran it where
    report = json.loads((run / "report.json").read_text())
    assert (run / "report.md").read_text().strip()
    ran = json.loads((run / "run.json").read_text())
    assert ran["command"][-4:] == ["--quick", "--no-baseline", "--out", str(tmp_path)] and ran["machine"]["cores"]
    assert len(ran["commit"] or "") == 40 and "cpu_flags" in ran["machine"]
    assert report["random_weights"] is True
    assert report["cpu_ceilings"]["fp32_gflops"] > 0 and report["cpu_ceilings"]["int8_gops"] > 0
    assert isinstance(report["machine"]["cpu_flags"], list) and "(flags: " in result.stdout
    assert any(
        row.get("status") == "ok" and row["provider"] == "CPUExecutionProvider" for row in report["model_throughput"]
    )
    assert report["end_to_end"][0]["images"] == 8
    assert {row["dtype"] for row in report["vector_index"]} == {"f32", "f16", "i8"}
    assert "side_by_side" not in report
    quality = report["quality"]
    if os.environ.get("EDGE_SEARCH_TEST_REQUIRE_TRAINED") == "1" or "status" not in quality:
        measured = [r for r in quality["precisions"].values() if "edits" in r]  # int8, or fp32 where int8 failed
        row = measured[0]  # its gate on this CPU; figures are reported, not asserted: the shape is
        assert set(row["edits"]) == {"flip", "colour", "small+jpeg", "crop", "rotation", "letterbox"}
        assert {"top1_percent", "top5_percent"} <= set(row["edits"]["crop"]) and 0 < row["dupes_threshold"][
            "threshold"
        ] <= 1
    dupes = report["dupes"]
    if os.environ.get("EDGE_SEARCH_TEST_REQUIRE_TRAINED") == "1" or "status" not in dupes:
        assert [row["threshold"] for row in dupes["thresholds"]] == [0.85, 0.9, 0.95]
        assert set(dupes["thresholds"][0]["recall_percent"]) == {
            "resized",
            "re-encoded",
            "mirrored",
            "cropped",
            "renamed",
        }
        assert dupes["index_time_pixel_check"]["ratio"] > 0
    assert report["service"]["warm_8_clients"]["requests"] == 8 and report["service"]["cold_cli_query"]["p50_ms"] > 0
    for title in (
        "Model throughput",
        "End-to-end indexing",
        "Vector index",
        "The warm service against a cold CLI query",
        "Search quality on trained weights",
        "Duplicates you can delete (trained weights)",
    ):
        assert f"## {title}" in result.stdout
