"""PNG plots of the latest results into bench/results/ (matplotlib, Agg backend)."""

from __future__ import annotations

import json
from pathlib import Path


def draw(results: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: list[Path] = []
    hot = results / "hot_rpc.json"
    if hot.exists():
        data = json.loads(hot.read_text())
        ref = data["reference"]
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for ax, rpc in zip(axes, ("GetProduct", "ListProducts"), strict=True):
            cells = [c for c in data["cells"] if c["rpc"] == rpc]
            configs = list(dict.fromkeys(c["config"] for c in cells))
            cs = sorted({c["concurrency"] for c in cells})
            width = 0.8 / max(1, len(configs))
            for i, name in enumerate(configs):
                ys = [next(c for c in cells if (c["config"], c["concurrency"]) == (name, k))
                      [f"ratio_vs_{ref}"]["median"] for k in cs]  # fmt: skip
                ax.bar([j + i * width for j in range(len(cs))], ys, width, label=name)
            ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cs))], [f"C={k}" for k in cs])
            ax.axhline(1.0, color="black", linewidth=0.8)
            ax.set_title(f"{rpc}: calls/s ratio vs {ref} (median of rounds)")
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        path = results / "hot_rpc.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        out.append(path)
    shop = results / "shop_load.json"
    if shop.exists():
        data = json.loads(shop.read_text())
        steps = data.get("steps", [])
        if steps:
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.plot([s["req_per_s"] for s in steps], [s["p99_ms"] for s in steps], "o-")
            for s in steps:
                ax.annotate(str(s["users"]), (s["req_per_s"], s["p99_ms"]), fontsize=8)
            ax.axhline(data["p99_threshold_ms"], color="red", linewidth=0.8)
            ax.set_xlabel("req/s")
            ax.set_ylabel("p99 ms")
            ax.set_title("shop load through NGINX (labels: users)")
            fig.tight_layout()
            path = results / "shop_load.png"
            fig.savefig(path, dpi=90)
            plt.close(fig)
            out.append(path)
    return out
