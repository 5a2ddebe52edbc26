"""Loss and metric curves as PNG, one panel per quantity."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on training machines
import matplotlib.pyplot as plt


def save_curves(history: dict[str, list[float]], path: Path, title: str) -> None:
    """history maps a series name to its per-epoch values; names sharing a prefix before '/' share a panel."""
    panels: dict[str, list[str]] = {}
    for name in history:
        panels.setdefault(name.split("/")[0], []).append(name)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (panel, names) in zip(axes[0], panels.items(), strict=True):
        for name in names:
            ax.plot(range(1, len(history[name]) + 1), history[name], marker="o", label=name)
        ax.set_xlabel("epoch")
        ax.set_title(panel)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
