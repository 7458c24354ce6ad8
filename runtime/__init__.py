"""edge-search device runtime: preprocessing, onnxruntime sessions, the catalog and the vector index.

Nothing under this package imports torch, transformers or optimum. ARCHITECTURE.md maps its layers.
"""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """`__version__`, read from the installed package's metadata (pyproject.toml is its one source), and only
    when asked for: a cold query does not pay for importlib.metadata."""
    if name == "__version__":
        from importlib.metadata import version

        return version("edge-search")
    raise AttributeError(name)
