"""edge-search export stage: Hugging Face vision encoder -> verified ONNX bundle (runs on a workstation, with torch)."""
