"""What indexing a video costs, and how the frame sampling rule trades frames for recall, on slideshows made from
real photos (Debian's wallpapers): cuts, fades and pans, encoded by PyAV at 1080p in H.264 (libx264 veryfast) and
HEVC (libx265 ultrafast), 30 frames/s.

    python -m benchmarks.video [--quick] [--json FILE]

Per codec and rule, in a fresh process each: seconds of video indexed per wall second and per CPU second (decode,
sample, embed: `jobs.videos.VideoEmbedder`, the runtime's own path), frames embedded per minute of video, the peak
memory of the process and what the video added to it, and recall: for each scene, whether a query with its photo
finds a frame inside that scene's span as the top result among all frames and 30 other real photos. The model is
the trained DINOv2 ViT-S/14 fixture (int8, onnxruntime CPU): its embeddings mean something, so recall does too.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edge_search.runtime.model.video import SamplingRule

from .common import CACHE, section_main

RULES = {
    "scene change (default)": SamplingRule(),
    "scene change, B-frames decoded": SamplingRule(skip_nonref=False),
    "keyframes only": SamplingRule(keyframes_only=True),
    "every 1 s": SamplingRule(step_s=1.0, change=2.0, max_gap_s=1.0),
    "every 0.5 s": SamplingRule(step_s=0.5, change=2.0, max_gap_s=0.5),
}
ENCODERS = {"H.264": ("h264", {"preset": "veryfast"}), "HEVC": ("hevc", {"preset": "ultrafast"})}


def _photos(quick: bool, bundle: Path) -> tuple[list[Path], list[Path]]:
    """(the slideshow's photos, distractors): Debian's wallpapers, each a different picture (the packages ship
    light/dark variants and several sizes of one picture: a photo within cosine 0.8 of one taken is left out)."""
    from edge_search.runtime.model.model import Model
    from edge_search.runtime.options import ModelOptions

    from .real_photos import real_photos

    chosen_file = CACHE / "videos" / "distinct-photos.json"
    if not chosen_file.is_file():
        model = Model.open(bundle, ModelOptions(device="cpu"))
        chosen: list[tuple[Path, np.ndarray]] = []
        for path in sorted(p for p in real_photos(CACHE / "real-photos").iterdir() if p.is_file()):
            vector = model.embed_image(path)
            if all(float(vector @ other) < 0.8 for _, other in chosen):
                chosen.append((path, vector))
        chosen_file.parent.mkdir(parents=True, exist_ok=True)
        chosen_file.write_text(json.dumps([str(path) for path, _ in chosen]))
    distinct = [Path(p) for p in json.loads(chosen_file.read_text())]
    scenes = distinct[::2][: 4 if quick else 20]
    others = distinct[1::2][: 8 if quick else 30]
    return scenes, others


def _video(label: str, scenes: list[Path], quick: bool) -> tuple[Path, list[dict]]:
    from .slideshow import make_slideshow

    codec, options = ENCODERS[label]
    folder = CACHE / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{codec}-{len(scenes)}{'-quick' if quick else ''}"
    video, spans_file = folder / f"{name}.mp4", folder / f"{name}.json"
    if not spans_file.is_file():
        size = (640, 360) if quick else (1920, 1080)
        spans = make_slideshow(scenes, video, codec=codec, size=size, fps=30, options=options)
        spans_file.write_text(json.dumps([{**asdict(s), "photo": str(s.photo)} for s in spans]))
    return video, json.loads(spans_file.read_text())


def run_one(bundle: str, video: str, rule: dict, spans: list[dict], others: list[str]) -> dict:
    """One measurement, in this process (a fresh one: its peak memory is this run's)."""
    from edge_search.runtime.jobs.videos import VideoEmbedder
    from edge_search.runtime.model.model import Model
    from edge_search.runtime.options import ModelOptions

    model = Model.open(Path(bundle), ModelOptions(device="cpu"))
    model.embedder.embed_pixels(np.zeros((1, 3, *model.preprocessor.input_hw), dtype=np.float32))  # warm
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wall, cpu = time.perf_counter(), time.process_time()
    result = VideoEmbedder(model.embedder, SamplingRule(**rule)).frames(video, "benchmark")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before the photos below are decoded
    scenes = np.stack([model.embed_image(Path(s["photo"])) for s in spans])
    distractors = np.stack([model.embed_image(Path(p)) for p in others])
    assert result.frames is not None, result.error
    times = np.array([at for at, _, _ in result.frames])
    gallery = np.concatenate([np.stack([v for _, v, _ in result.frames]), distractors])
    found = 0
    for scene, span in zip(scenes, spans):
        best = int(np.argmax(gallery @ scene))
        found += best < len(times) and span["start"] <= times[best] < span["end"]
    duration = spans[-1]["end"]
    return {
        "seconds": round(wall, 2),
        "video_s_per_s": round(duration / wall, 2),
        "video_s_per_cpu_s": round(duration / cpu, 2),
        "frames": len(times),
        "frames_per_minute": round(len(times) * 60 / duration, 1),
        "recall": round(found / len(spans), 3),
        "peak_mb": round(peak / 1024),
        "added_mb": round((peak - before) / 1024),
        "precision": model.precision,
    }


def measure(quick: bool) -> dict:
    from .quality import trained_bundle

    bundle = trained_bundle(static=False)
    scenes, others = _photos(quick, bundle)
    rows = []
    for label in ENCODERS:
        video, spans = _video(label, scenes, quick)
        for rule_name, rule in RULES.items():
            job = {"bundle": str(bundle), "video": str(video), "rule": asdict(rule), "spans": spans,
                   "others": [str(p) for p in others]}  # fmt: skip
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.video", "--one", json.dumps(job)],
                capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
                env={**os.environ, "EDGE_SEARCH_DEVICE": "cpu"},
            )  # fmt: skip
            rows.append({"codec": label, "rule": rule_name, **json.loads(done.stdout.strip().splitlines()[-1])})
    height = 360 if quick else 1080
    transitions = {t["transition"] for t in _video("H.264", scenes, quick)[1]}
    return {
        "video": {
            "scenes": len(scenes),
            "seconds": len(scenes) * 3,
            "height": height,
            "fps": 30,
            "transitions": sorted(transitions),
            "distractors": len(others),
        },  # fmt: skip
        "model": "DINOv2 ViT-S/14 trained (the fixture), onnxruntime CPU",
        "rows": rows,
    }


def markdown(report: dict) -> str:
    video = report["video"]
    lines = [
        f"{video['seconds']} s slideshow of {video['scenes']} real photos ({', '.join(video['transitions'])}), "
        f"{video['height']}p {video['fps']} frames/s; {report['model']}; recall among all frames and "
        f"{video['distractors']} other photos.",
        "",
        "| codec | sampling rule | video s / wall s | video s / CPU s | frames / min | recall (top 1) | peak MB "
        "(video adds) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        mark = " *" if row["rule"].endswith("(default)") else ""
        lines.append(
            f"| {row['codec']} | {row['rule']}{mark} | {row['video_s_per_s']} | {row['video_s_per_cpu_s']} | "
            f"{row['frames_per_minute']} | {row['recall']:.2f} | {row['peak_mb']} ({row['added_mb']}) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(run_one(**json.loads(sys.argv[2]))))
    else:
        section_main("python -m benchmarks.video", __doc__, measure, markdown)
