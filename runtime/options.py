"""The choices a caller makes, each spelled once: devices, precisions, and how to open a model.

Built once at the edge (the CLI's options, the service's configuration, a Python caller) and passed down as one
frozen object, so every layer sees the same validated values.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeAlias

from edge_search.runtime.errors import UsageError

if TYPE_CHECKING:
    from PIL import Image

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # Python 3.10 (JetPack 6): the same behaviour where it matters here, str() and format() give the value

    class StrEnum(str, Enum):
        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return str(self.value).__format__(spec)


class Device(StrEnum):
    """Where the model runs. `auto` tries TensorRT and CUDA (where their libraries load), then OpenVINO (where it is
    installed, the bundle has an int8-static graph and the job is a long one), and keeps each only if a session
    really starts there; `cpu` is onnxruntime's CPU."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    tensorrt = "tensorrt"
    openvino = "openvino"


class Precision(StrEnum):
    """Which graph of the bundle runs; `auto` is fp16 on CUDA, int8-static on OpenVINO and int8 on the CPU
    (see `providers`). int8 is quantized dynamically (onnxruntime), int8-static is calibrated for OpenVINO."""

    auto = "auto"
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"
    int8_static = "int8-static"


# The graphs a bundle can hold, in the order export-model writes them.
GRAPH_PRECISIONS: tuple[str, ...] = tuple(p.value for p in Precision if p is not Precision.auto)

# What a query or the indexer accepts as an image: a path, encoded bytes, or a decoded PIL image.
# (A string: PIL is imported only where images are decoded, not by everything that reads options.)
ImageSource: TypeAlias = "str | os.PathLike[str] | bytes | Image.Image"


@dataclass(frozen=True)
class CudaOptions:
    """CUDA settings that matter on small GPU boxes (None = onnxruntime's default)."""

    device_id: int = 0
    mem_limit_bytes: int | None = None
    arena_strategy: str | None = None  # "kNextPowerOfTwo" or "kSameAsRequested"

    def as_provider_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"device_id": self.device_id}
        if self.mem_limit_bytes:
            options["gpu_mem_limit"] = self.mem_limit_bytes
        if self.arena_strategy:
            options["arena_extend_strategy"] = self.arena_strategy
        return options


# What export-model writes unless told otherwise: every graph (int8-static calibrated on the user's photos, or on
# the photos shipped with the export package).
DEFAULT_EXPORT_PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8", "int8-static")


@dataclass(frozen=True)
class OpenVinoOptions:
    """OpenVINO settings: which of its devices runs the model ("CPU"; "GPU" or "NPU" for Intel graphics and
    NPUs, untested here), and whether compiled models are cached (the first compile is seconds, a cached one
    a fraction of that)."""

    device: str = "CPU"
    cache: bool = True


def choose(kind: type[StrEnum], value: object, option: str) -> Any:
    """`value` as a member of `kind`, or a UsageError naming `option` and the choices."""
    try:
        return kind(str(value))
    except ValueError:
        raise UsageError(f"{option} must be one of {', '.join(kind)}, not {value!r}.") from None


@dataclass(frozen=True)
class ModelOptions:
    """How to open a model: the same object for `Model.open`, `Library.open_model`, Ray workers and the CLI's
    prewarm. Strings are accepted for `device` and `precision` and checked here (a UsageError names the option)."""

    device: Device = Device.auto
    precision: Precision = Precision.auto
    threads: int | None = None  # None: the CPUs this process may use
    batch_size: int = 8
    cuda: CudaOptions = field(default_factory=CudaOptions)
    openvino: OpenVinoOptions = field(default_factory=OpenVinoOptions)
    jpeg_draft: bool = True  # decode large JPEGs at reduced size (see `preprocess`)
    max_megapixels: float | None = None  # None: what the available memory allows
    one_shot: bool = False  # the process runs the model once (`query`, `embed`): start-up time is what counts

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", choose(Device, self.device, "--device"))
        object.__setattr__(self, "precision", choose(Precision, self.precision, "--precision"))


@dataclass(frozen=True)
class OptionSpec:
    """How a person sets one option: its flag and its environment variable. The CLI declares its options from
    these, and the cold-start guess (`prewarm`) reads the command line and the environment with the same ones."""

    name: str  # the command's parameter
    flag: str
    env: str


OPTION_SPECS: dict[str, OptionSpec] = {
    spec.name: spec
    for spec in (
        OptionSpec("model", "--model", "EDGE_SEARCH_MODEL"),
        OptionSpec("index", "--index", "EDGE_SEARCH_INDEX"),
        OptionSpec("device", "--device", "EDGE_SEARCH_DEVICE"),
        OptionSpec("precision", "--precision", "EDGE_SEARCH_PRECISION"),
        OptionSpec("threads", "--threads", "EDGE_SEARCH_THREADS"),
        OptionSpec("batch_size", "--batch-size", "EDGE_SEARCH_BATCH_SIZE"),
        OptionSpec("cuda_device_id", "--cuda-device-id", "EDGE_SEARCH_CUDA_DEVICE"),
        OptionSpec("cuda_mem_limit", "--cuda-mem-limit", "EDGE_SEARCH_CUDA_MEM_LIMIT_MB"),
        OptionSpec("cuda_arena", "--cuda-arena", "EDGE_SEARCH_CUDA_ARENA"),
        OptionSpec("openvino_device", "--openvino-device", "EDGE_SEARCH_OPENVINO_DEVICE"),
        OptionSpec("jpeg_draft", "--jpeg-draft", "EDGE_SEARCH_JPEG_DRAFT"),
        OptionSpec("max_megapixels", "--max-megapixels", "EDGE_SEARCH_MAX_MEGAPIXELS"),
    )
}


@dataclass(frozen=True)
class DecodeLimits:
    """What decides whether a file can be decoded at all. The default follows the memory available, so it moves
    from run to run: only files refused for their size are tried again, and only when the limit rose."""

    max_pixels: int

    def recorded(self) -> str:
        """The form kept in the catalog's meta (and compared with the next run's)."""
        return f"max_pixels={self.max_pixels}"

    @classmethod
    def from_recorded(cls, text: str | None) -> DecodeLimits | None:
        try:
            return cls(int(text.split("=", 1)[1])) if text and text.startswith("max_pixels=") else None
        except ValueError:
            return None

    def may_decode_more_than(self, other: DecodeLimits | None) -> bool:
        """Whether a file refused under `other` (too many pixels) might decode under these limits."""
        return other is None or self.max_pixels > other.max_pixels

    @staticmethod
    def refused_for_size(error: str | None) -> bool:
        """Whether a failure was the pixel limit's (the only failure a changed limit can undo)."""
        return bool(error) and ("megapixels" in error or "too large to decode" in error)  # type: ignore[operator]
