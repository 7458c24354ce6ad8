"""Export defaults, in a module with no heavy imports so `export-model --help` works anywhere."""

DEFAULT_MODEL = "google/vit-base-patch16-224"
DEFAULT_OPSET = 17
