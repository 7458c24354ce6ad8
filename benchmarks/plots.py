"""PNG charts of a benchmark report (matplotlib, from the `bench` extra)."""

from __future__ import annotations

from pathlib import Path


def write_plots(report: dict, stem: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rows = [r for r in report["model_throughput"] if r.get("status") == "ok"]
    if rows:
        fig, ax = plt.subplots(figsize=(7, 4))
        labels = sorted({(r["provider"].replace("ExecutionProvider", ""), r["precision"]) for r in rows})
        batches = sorted({r["batch"] for r in rows})
        width = 0.8 / len(labels)
        for i, (provider, precision) in enumerate(labels):
            values = [
                next(
                    (
                        r["images_per_s"]
                        for r in rows
                        if r["batch"] == b and r["precision"] == precision and r["provider"].startswith(provider)
                    ),
                    0,
                )
                for b in batches
            ]
            ax.bar([b + i * width for b in range(len(batches))], values, width, label=f"{provider} {precision}")
        ax.set_xticks([b + 0.4 - width / 2 for b in range(len(batches))], [f"batch {b}" for b in batches])
        ax.set_ylabel("images/s")
        ax.set_title(
            f"Model throughput — {report['machine']['cpu']}{' (random weights)' if report['random_weights'] else ''}"
        )
        ax.legend()
        path = stem.with_name(stem.name + "-throughput.png")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    side = report.get("side_by_side") or {}
    if "indexing" in side:
        fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
        pairs = [
            ("indexing, images/s", side["indexing"]["edge_images_per_s"], side["indexing"]["original_images_per_s"]),
            ("cold query, s", side["cold_query"]["edge_s"], side["cold_query"]["original_s"]),
            (
                "cold query peak RSS, MB",
                side["cold_query"]["edge_peak_rss_mb"],
                side["cold_query"]["original_peak_rss_mb"],
            ),
        ]
        for ax, (title, edge, original) in zip(axes, pairs):
            ax.bar(["edge-search", "original"], [edge, original], color=["#2a7", "#999"])
            ax.set_title(title)
        fig.suptitle("edge-search vs torch + chromadb")
        fig.tight_layout()
        path = stem.with_name(stem.name + "-vs-original.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
