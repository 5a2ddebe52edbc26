"""Plots of the serving benchmarks (matplotlib, PNG): throughput of each server with its rounds' spread, latency
percentiles at 64 clients, and latency against offered load (bench/latency_curve.py)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display here
import matplotlib.pyplot as plt


def throughput_and_latency(report: dict, path: Path) -> None:
    """One row of panels per endpoint: req/s of every closed-loop server (bar: the median round, whiskers: the
    slowest and fastest rounds) and its p50 / p95 / p99 latency."""
    endpoints = list(dict.fromkeys(r["endpoint"] for r in report["rows"]))
    fig, axes = plt.subplots(len(endpoints), 2, figsize=(13, 3.2 * len(endpoints)), squeeze=False)
    for (rate_ax, latency_ax), endpoint in zip(axes, endpoints, strict=True):
        rows = [r for r in report["rows"] if r["endpoint"] == endpoint and "open loop" not in r["server"]]
        names = [r["server"] for r in rows]
        y = range(len(rows))
        rates = [r["ok_per_s"] for r in rows]
        spread = [r.get("ok_per_s_rounds", [r["ok_per_s"]]) for r in rows]
        whiskers = [[m - min(s) for m, s in zip(rates, spread, strict=True)],
                    [max(s) - m for m, s in zip(rates, spread, strict=True)]]  # fmt: skip
        rate_ax.barh(y, rates, xerr=whiskers, color="tab:blue", alpha=0.8, capsize=3)
        rate_ax.set_yticks(list(y), names, fontsize=8)
        rate_ax.invert_yaxis()
        rate_ax.set_xlabel("ok requests/s (median round; whiskers: all rounds)")
        rate_ax.set_title(f"{endpoint}: throughput, {rows[0]['concurrency']} clients")
        rate_ax.grid(axis="x", alpha=0.3)
        height = 0.27
        for k, (key, color) in enumerate((("p50_ms", "tab:green"), ("p95_ms", "tab:orange"), ("p99_ms", "tab:red"))):
            latency_ax.barh([i + (k - 1) * height for i in y], [r[key] for r in rows], height, label=key[:3],
                            color=color)  # fmt: skip
        latency_ax.set_yticks(list(y), [""] * len(rows))
        latency_ax.invert_yaxis()
        latency_ax.set_xlabel("latency, ms")
        latency_ax.set_title(f"{endpoint}: latency at that load")
        latency_ax.grid(axis="x", alpha=0.3)
        latency_ax.legend(fontsize=8)
    fig.suptitle(f"{report['command']} ({report['measured']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def latency_against_load(curve: dict, path: Path) -> None:
    """p50 and p99 latency against the rate each server actually answered, one line per server, open loop."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (server, points), color in zip(curve["servers"].items(), ("tab:blue", "tab:orange", "tab:green"), strict=False):
        served = [p["ok_per_s"] for p in points]
        ax.plot(served, [p["p99_ms"] for p in points], marker="o", color=color, label=f"{server}: p99")
        ax.plot(served, [p["p50_ms"] for p in points], marker=".", linestyle="--", color=color, label=f"{server}: p50")
    ax.axhline(100, color="grey", linewidth=0.8, linestyle=":")
    ax.set_yscale("log")
    ax.set_xlabel(f"{curve['endpoint']} requests answered per second (open loop, constant rate)")
    ax.set_ylabel("latency, ms (log)")
    ax.set_title("latency against load", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
