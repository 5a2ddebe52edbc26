"""Build the CPU image, start it, time it to /ready, and report its size and what weighs most in it: the
figures of docs/serving.md#container.

    python -m bench.container              # needs a Docker engine (../shared/tools/docker-local.sh here)

tests/test_container.py drives the same helpers to check the image for real.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.harness import replace_block

ROOT = Path(__file__).resolve().parent.parent
SITE_PACKAGES = "/opt/venv/lib/python3.11/site-packages"


def docker(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


def engine_available() -> bool:
    try:
        return docker("info", check=False, timeout=20).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


def build(tag: str, dockerfile: str = "docker/Dockerfile") -> float:
    """Build with the host's network (no bridge here); returns the seconds it took."""
    started = time.perf_counter()
    docker("build", "--network", "host", "-f", str(ROOT / dockerfile), "-t", tag, str(ROOT), timeout=1200)
    return time.perf_counter() - started


def image_megabytes(tag: str) -> float:
    return int(docker("image", "inspect", tag, "--format", "{{.Size}}").stdout.strip()) / 1e6


def largest_packages(tag: str, count: int = 8) -> dict[str, float]:
    """The `count` largest entries of the image's site-packages, in MB (du's apparent sizes)."""
    listing = docker(
        "run", "--rm", "--network", "host", "--entrypoint", "du", tag,
        "--apparent-size", "--block-size=1", "--max-depth=1", SITE_PACKAGES,
    ).stdout  # fmt: skip
    sizes = {Path(path).name: int(size) / 1e6 for size, path in (line.split("\t") for line in listing.splitlines())}
    sizes.pop(Path(SITE_PACKAGES).name)  # the folder's own total
    return {name: round(mb, 1) for name, mb in sorted(sizes.items(), key=lambda item: -item[1])[:count]}


def start(tag: str, name: str, port: int, *env: str) -> float:
    """Run detached on the host network; returns the monotonic time it was started at."""
    docker("rm", "-f", name, check=False)
    flags = [f"--env={e}" for e in (f"PORT={port}", *env)]
    started = time.monotonic()
    docker("run", "-d", "--name", name, "--network", "host", *flags, tag)
    return started


def wait_ready(port: int, started: float, timeout: float = 120) -> float:
    """Seconds from `started` until /ready answers 200."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:
        while time.monotonic() - started < timeout:
            try:
                if client.get("/ready").status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"not ready within {timeout} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", default="charserve:cpu")
    parser.add_argument("--port", type=int, default=18000)
    parser.add_argument("--runs", type=int, default=5, help="starts to time")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "container.json")
    args = parser.parse_args(argv)
    build_seconds = build(args.tag)
    load = os.getloadavg()[0]  # start times stretch on a host that other work keeps busy
    ready = []
    for _ in range(args.runs):
        started = start(args.tag, "charserve-bench", args.port)
        try:
            ready.append(round(wait_ready(args.port, started), 2))
        finally:
            docker("rm", "-f", "charserve-bench", check=False)
    result = {
        "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "image": args.tag,
        "image_mb": round(image_megabytes(args.tag), 1),
        "base_image_mb": round(image_megabytes("python:3.11-slim"), 1),
        "largest_packages_mb": largest_packages(args.tag),
        "build_seconds": round(build_seconds, 1),
        "start_to_ready_seconds": ready,
        "start_to_ready_median": sorted(ready)[len(ready) // 2],
        "host_cores": os.cpu_count(),
        "host_load_average_1m": round(load, 2),
        "command": " ".join(["python -m bench.container", *(sys.argv[1:] if argv is None else argv)]),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    write_readme(result)


def write_readme(result: dict) -> None:
    block = (
        f"Measured {result['measured']} with `{result['command']}` (Docker engine and stand-in "
        "`python:3.11-slim` from `../shared/tools/docker-local.sh`, 2 CPU cores): image "
        f"**{result['image_mb']:.0f} MB**, of which {result['base_image_mb']:.0f} MB is the base image "
        "(the stand-in's Debian Python; the real `python:3.11-slim` is smaller); container start to `/ready` 200, "
        "every model loaded and warmed: "
        f"median **{result['start_to_ready_median']:.1f} s** over {len(result['start_to_ready_seconds'])} starts "
        f"({', '.join(f'{s:.1f}' for s in result['start_to_ready_seconds'])} s).\n"
    )
    replace_block(ROOT / "README.md", "container", block)


if __name__ == "__main__":
    main()
