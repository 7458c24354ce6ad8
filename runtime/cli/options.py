"""Options that several commands share, declared once (with their help text and environment variable)."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_search.runtime.options import OPTION_SPECS as SPEC
from edge_search.runtime.options import CudaOptions, Device, ModelOptions, OpenVinoOptions, Precision, StrEnum

MONTAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")

ModelOpt = Annotated[
    Optional[Path],
    typer.Option(
        SPEC["model"].flag,
        help="Bundle directory made by export-model [default: the bundle the index recorded, else "
        "export-model's default location].",
        envvar=SPEC["model"].env,
        show_envvar=True,
    ),
]
IndexOpt = Annotated[
    Optional[Path],
    typer.Option(
        SPEC["index"].flag,
        help="Index directory [default: ~/.local/share/edge-search/index].",
        envvar=SPEC["index"].env,
        show_envvar=True,
    ),
]
DeviceOpt = Annotated[
    Device,
    typer.Option(
        SPEC["device"].flag,
        help="Where the model runs; auto tries CUDA, then OpenVINO (if installed and the bundle has an int8-static "
        "graph), and keeps each only if it really starts; cpu is onnxruntime's CPU.",
        envvar=SPEC["device"].env,
        show_envvar=True,
    ),
]
PrecisionOpt = Annotated[
    Precision,
    typer.Option(
        SPEC["precision"].flag,
        help="Which graph (auto: fp16 on CUDA, int8-static on OpenVINO, int8 on the CPU).",
        envvar=SPEC["precision"].env,
        show_envvar=True,
    ),
]
ThreadsOpt = Annotated[
    Optional[int],
    typer.Option(
        SPEC["threads"].flag,
        min=1,
        help="CPU threads [default: the CPUs this process may use].",
        envvar=SPEC["threads"].env,
    ),
]
BatchOpt = Annotated[
    int, typer.Option(SPEC["batch_size"].flag, min=1, help="Images per model call.", envvar=SPEC["batch_size"].env)
]
CudaIdOpt = Annotated[
    int, typer.Option(SPEC["cuda_device_id"].flag, min=0, help="CUDA device id.", envvar=SPEC["cuda_device_id"].env)
]
OpenVinoDeviceOpt = Annotated[
    str,
    typer.Option(
        SPEC["openvino_device"].flag,
        help="OpenVINO's device for --device openvino: CPU, or GPU / NPU for Intel graphics and NPUs (untested).",
        envvar=SPEC["openvino_device"].env,
    ),
]
CudaMemOpt = Annotated[
    Optional[int],
    typer.Option(
        SPEC["cuda_mem_limit"].flag, min=1, help="CUDA memory arena limit in MiB.", envvar=SPEC["cuda_mem_limit"].env
    ),
]
Print0Opt = Annotated[
    bool,
    typer.Option(
        "-0",
        "--print0",
        help="Paths only (implies -f), each ended by a NUL byte instead of a newline: for `xargs -0`, whatever the "
        "file names hold (spaces, quotes, emoji, bytes that are not UTF-8).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
DraftOpt = Annotated[
    bool,
    typer.Option(
        f"{SPEC['jpeg_draft'].flag}/--no-jpeg-draft",
        help="Decode large JPEGs at reduced size (DCT scaling): about 3.5x faster; embeddings within 2e-4 cosine "
        "of full decoding on real photos (min 0.99980).",
        envvar=SPEC["jpeg_draft"].env,
    ),
]
MaxMpOpt = Annotated[
    Optional[float],
    typer.Option(
        SPEC["max_megapixels"].flag,
        min=1,
        help="Skip images larger than this after JPEG draft decoding [default: what the available memory "
        "allows, 24 to 178].",
        envvar=SPEC["max_megapixels"].env,
    ),
]
MilvusOpt = Annotated[
    Optional[str],
    typer.Option(
        "--milvus",
        metavar="URI",
        help="A Milvus server (http://HOST:19530) or a Milvus Lite file (fleet.db) holding several boxes' indexes.",
        envvar="EDGE_SEARCH_MILVUS",
        show_envvar=True,
    ),
]
BoxOpt = Annotated[
    Optional[str],
    typer.Option(
        "--box", help="This box's name in the fleet collection [default: the host name].", envvar="EDGE_SEARCH_BOX"
    ),
]
CollectionOpt = Annotated[
    Optional[str],
    typer.Option("--collection", help="Milvus collection [default: one per bundle identity, edge_search_<identity>]."),
]
MilvusTokenOpt = Annotated[
    Optional[str],
    typer.Option(
        "--milvus-token", help="Milvus credentials, USER:PASSWORD or an API key.", envvar="EDGE_SEARCH_MILVUS_TOKEN"
    ),
]
VerboseOpt = Annotated[
    bool, typer.Option("-v", "--verbose", help="Repeat notes already shown once (e.g. that CUDA cannot start).")
]


def cuda_arena(value: Optional[str]) -> Optional[str]:
    if value is not None and value not in CUDA_ARENAS:
        raise typer.BadParameter(f"must be {' or '.join(CUDA_ARENAS)}", param_hint="--cuda-arena")
    return value


CUDA_ARENAS = ("kNextPowerOfTwo", "kSameAsRequested")
CudaArenaOpt = Annotated[
    Optional[str],
    typer.Option(
        SPEC["cuda_arena"].flag,
        callback=cuda_arena,
        help="CUDA arena growth: kNextPowerOfTwo or kSameAsRequested.",
        envvar=SPEC["cuda_arena"].env,
    ),
]


def cuda_options(device_id: int, mem_limit_mib: int | None, arena: str | None) -> CudaOptions:
    return CudaOptions(
        device_id=device_id,
        mem_limit_bytes=mem_limit_mib * 1024 * 1024 if mem_limit_mib else None,
        arena_strategy=arena,
    )


def montage_path(value: Optional[Path]) -> Optional[Path]:
    """--montage is checked before anything runs: its suffix picks the format."""
    if value is not None and value.suffix.lower() not in MONTAGE_SUFFIXES:
        raise typer.BadParameter(
            f"{value} needs one of the suffixes {', '.join(MONTAGE_SUFFIXES)}", param_hint="--montage"
        )
    return value


MontageOpt = Annotated[
    Optional[Path],
    typer.Option(
        callback=montage_path, help="Write the query and its results as a contact sheet to this .jpg/.png/.webp file."
    ),
]


def with_model_options(*, batch: bool = True, one_shot: bool = False):
    """Give a command the options that choose and run the model, declared here once.

    The command receives them as one `ModelOptions`, `model_options`, for `Model.open` / `Library.open_model`.
    `one_shot`: the command runs the model once per process (`query`, `embed`), so `auto` picks the engine that
    starts fastest.
    """
    shared = [
        ("device", DeviceOpt, Device.auto),
        ("precision", PrecisionOpt, Precision.auto),
        ("threads", ThreadsOpt, None),
        *([("batch_size", BatchOpt, 8)] if batch else []),
        ("cuda_device_id", CudaIdOpt, 0),
        ("cuda_mem_limit", CudaMemOpt, None),
        ("cuda_arena", CudaArenaOpt, None),
        ("openvino_device", OpenVinoDeviceOpt, "CPU"),
        ("jpeg_draft", DraftOpt, True),
        ("max_megapixels", MaxMpOpt, None),
    ]

    def decorate(command):
        signature = inspect.signature(command, eval_str=True)  # resolve the command's own annotations here
        own = [p for p in signature.parameters.values() if p.name != "model_options"]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
            for name, annotation, default in shared
        ]

        @functools.wraps(command)
        def run(**kwargs):
            chosen = {name: kwargs.pop(name) for name, _, _ in shared}
            model_options = ModelOptions(
                device=chosen["device"],
                precision=chosen["precision"],
                threads=chosen["threads"],
                batch_size=chosen.get("batch_size", 1),
                cuda=cuda_options(chosen["cuda_device_id"], chosen["cuda_mem_limit"], chosen["cuda_arena"]),
                openvino=OpenVinoOptions(device=chosen["openvino_device"].upper()),
                jpeg_draft=chosen["jpeg_draft"],
                max_megapixels=chosen["max_megapixels"],
                one_shot=one_shot,
            )
            return command(**kwargs, model_options=model_options)

        keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        run.__signature__ = signature.replace(parameters=keyword + added)
        return run

    return decorate


# --------------------------------------------------------------------------------------- index's options
FoldersArg = Annotated[
    Optional[list[Path]],
    typer.Argument(help="Folders (or files) to index, recursively [default: the remembered ones]."),
]
ExcludeOpt = Annotated[
    Optional[list[str]], typer.Option(help="Glob of paths or names to skip; repeatable; remembered per folder.")
]
IncludeHiddenOpt = Annotated[
    Optional[bool],
    typer.Option(
        "--include-hidden/--skip-hidden",
        help="Also index hidden files and folders, thumbnail caches (@eaDir, .thumbnails) and recycle bins "
        "[default: skip them, or what the folder remembered].",
    ),
]
FollowLinksOpt = Annotated[
    Optional[bool],
    typer.Option(
        "--follow-links/--no-follow-links",
        help="Also index photos that symlinks lead to outside the indexed folders (the service then serves "
        "them too) [default: skip such links and list them, or what the folder remembered].",
    ),
]
NoPruneOpt = Annotated[bool, typer.Option("--no-prune", help="Keep catalog entries of files deleted under DIR.")]
DtypeOpt = Annotated[Optional[str], typer.Option("--dtype", help="Index vector type: f16 (default), f32, i8.")]
ConnectivityOpt = Annotated[Optional[int], typer.Option(min=2, help="HNSW connectivity (M).")]
ExpansionAddOpt = Annotated[Optional[int], typer.Option(min=1, help="HNSW expansion while building.")]
ExpansionSearchOpt = Annotated[Optional[int], typer.Option(min=1, help="HNSW expansion while searching.")]
PublishEveryOpt = Annotated[
    float,
    typer.Option(
        min=0,
        help="Seconds between index publishes while indexing (queries see progress).",
        envvar="EDGE_SEARCH_PUBLISH_EVERY",
    ),
]
RayOpt = Annotated[
    Optional[str],
    typer.Option(
        "--ray",
        metavar="ADDRESS",
        help="Embed on this Ray cluster (e.g. 10.0.0.5:6379); the walk, hashes and commits stay on this "
        "box. Needs the ray extra here and on every node.",
        envvar="EDGE_SEARCH_RAY",
        show_envvar=True,
    ),
]
RayShipBytesOpt = Annotated[
    bool,
    typer.Option(
        "--ray-ship-bytes",
        help="Send the files and the bundle to the Ray workers through the object store [default: workers "
        "read them at the same paths].",
    ),
]
RayCpusOpt = Annotated[
    Optional[int],
    typer.Option(
        "--ray-cpus-per-worker",
        min=1,
        help="CPUs (= onnxruntime threads) per Ray worker [default: min(4, the smallest node's CPUs)].",
    ),
]
RayTimeoutOpt = Annotated[
    float,
    typer.Option("--ray-timeout", min=1, help="Seconds to wait for the cluster to place workers before giving up."),
]

# --------------------------------------------------------------------------------------- query's options
QueryImagesArg = Annotated[
    Optional[list[str]],
    typer.Argument(help="Query photo(s), or - for standard input; each may start with a weight, as in 2:beach.jpg."),
]
TextOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--text",
        "-t",
        help='Words to search by, e.g. "a dog on a beach" (CLIP bundles); repeat for several, each may start with a '
        'weight ("0.5:at night"). With photos: combined with them.',
    ),
]
TextWeightOpt = Annotated[
    float, typer.Option(help="Weight of each --text phrase that gives none (negative: away from the words).")
]
UnlikeOpt = Annotated[
    Optional[list[str]],
    typer.Option("--unlike", help="A photo the results should not look like (repeat; may start with a weight)."),
]
UnlikeTextOpt = Annotated[
    Optional[list[str]],
    typer.Option("--unlike-text", help='Words the results should not match, e.g. "people" (repeat; CLIP bundles).'),
]
AfterOpt = Annotated[
    Optional[str],
    typer.Option(help="Only photos taken from this date on: a year, a month or a day (2024, 2024-06, 2024-06-15)."),
]
BeforeOpt = Annotated[
    Optional[str], typer.Option(help="Only photos taken before this date: a year, a month or a day (2025, 2024-09).")
]


class ResultKind(StrEnum):
    """What `query --type` keeps."""

    PHOTO = "photo"
    VIDEO = "video"


KindOpt = Annotated[
    Optional[ResultKind],
    typer.Option("--type", help="Only photos, or only videos (each at its best-matching moment)."),
]
TopOpt = Annotated[int, typer.Option("-k", "--top", min=1, max=100_000, help="How many results.")]
MinScoreOpt = Annotated[
    Optional[float], typer.Option(min=-1.0, max=1.0, help="Drop results below this cosine similarity.")
]
UnderOpt = Annotated[Optional[Path], typer.Option(help="Only results inside this folder.")]
ExcludeSelfOpt = Annotated[
    bool, typer.Option("--exclude-self", help="Leave out the query images themselves (same path or same content).")
]
PathsOnlyOpt = Annotated[
    bool, typer.Option("-f", "--paths-only", help="Print only the paths, one per line (for xargs, feh).")
]
FleetBoxOpt = Annotated[
    Optional[str], typer.Option("--box", help="With --milvus: only this box's images [default: every box].")
]
