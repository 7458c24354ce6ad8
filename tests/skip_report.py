"""The skip report: every skipped test and module is listed with its reason at the end of a run, and where CI
requires every tier to run (CI=true, or an EDGE_SEARCH_TEST_REQUIRE_* variable set), a skip whose reason is not
on the short allow-list below fails the run. A skip hides a test that checked nothing; CI must not pass on one.
CONTRIBUTING.md "Skips" documents the list."""

from __future__ import annotations

import os
import re

import pytest

# The only reasons a test may skip in CI: what no CI machine here can have, or what a CPU class decides.
ALLOWED_SKIPS: dict[str, str] = {
    r"needs a GPU": "CUDA / TensorRT on a real GPU (the device check runs them where one is lent)",
    r"needs root": "bind mounts and other root-only fault injection",
    r"not offered on this CPU: int8 kernels saturate here": (
        "an int8 graph left out by its gate on an AVX2 CPU without VNNI; `offered` checked it is merely saturated"
    ),
}

SKIPS: list[tuple[str, str]] = []  # (node id, reason) of this run's skips: one run per process


def skips_must_be_allowed() -> bool:
    """Whether this run is CI's: CI=true, or any EDGE_SEARCH_TEST_REQUIRE_* variable set (to anything but 0)."""
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        return True
    return any(k.startswith("EDGE_SEARCH_TEST_REQUIRE_") and v not in ("", "0") for k, v in os.environ.items())


def allowed(reason: str) -> bool:
    return any(re.search(pattern, reason) for pattern in ALLOWED_SKIPS)


def _reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _record(report: pytest.CollectReport | pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):  # an xfail carries its own reason and is reported
        SKIPS.append((report.nodeid, _reason(report)))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _record(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:  # a module-level importorskip lands here
    _record(report)


def unexpected_skips() -> list[tuple[str, str]]:
    return [(node, reason) for node, reason in SKIPS if not allowed(reason)]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if skips_must_be_allowed() and unexpected_skips() and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    skips = SKIPS
    required = skips_must_be_allowed()
    terminalreporter.section(f"skip report: {len(skips)} skipped", sep="=")
    for node, reason in skips:
        verdict = "allowed" if allowed(reason) else ("UNEXPECTED (fails CI)" if required else "unexpected")
        terminalreporter.line(f"{verdict}: {node}: {reason}")
    unexpected = unexpected_skips()
    if required and unexpected:
        terminalreporter.line(
            f'{len(unexpected)} skip(s) not on the allow-list (tests/skip_report.py, CONTRIBUTING.md "Skips"): '
            "this run fails",
            red=True,
        )
