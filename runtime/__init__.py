"""edge-search device runtime: preprocessing, onnxruntime sessions, the catalog and the vector index.

Nothing under this package imports torch, transformers or optimum.
"""

__version__ = "0.1.0"
