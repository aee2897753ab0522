"""The per-module similarity plot written next to every realigned adapter (similarity.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def similarity_plot(modules: list[dict[str, Any]], path: str | Path, *, title: str, ylabel: str) -> Path:
    """Bar plot of each module's similarity in module order, patched modules highlighted; returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [float(m["similarity"]) for m in modules]
    patched = [bool(m["patched"]) for m in modules]
    colors = ["#d62728" if p else "#9ecae1" for p in patched]
    width = min(24.0, max(6.0, 0.06 * len(values) + 4))
    fig, ax = plt.subplots(figsize=(width, 4.0), dpi=100)
    try:
        ax.bar(range(len(values)), values, color=colors, width=0.9)
        if values:
            low, high = min(values), max(values)
            pad = max(0.02, 0.1 * (high - low))
            ax.set_ylim(min(0.0, low - pad) if low < 0 else max(0.0, low - pad), min(1.0, high + pad) + 0.01)
        ax.set_xlim(-1, max(len(values), 1))
        ax.set_xlabel("module (model order)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        handles = [
            plt.Rectangle((0, 0), 1, 1, color="#d62728"),
            plt.Rectangle((0, 0), 1, 1, color="#9ecae1"),
        ]
        n_patched = sum(patched)
        ax.legend(handles, [f"patched ({n_patched})", f"kept ({len(values) - n_patched})"], loc="lower right")
        fig.tight_layout()
        fig.savefig(path, metadata={"Software": None})
    finally:
        plt.close(fig)
    return Path(path)
