"""Measure a bundled model as it is served and record the figures in its manifest's "quality" block.

    PYTHONHASHSEED=0 python -m training.measure speller --data ../shared/data/spelling --write-manifest
    python -m training.measure classifier --data ../shared/data/dbpedia --write-manifest
    python -m training.measure poet --write-manifest
    python -m training.measure poet_transformer --write-manifest

The measuring is the quality bench's (bench/speller_quality.py, bench/classifier_quality.py,
bench/poet_quality.py): ours and the peers on the same data in one run, its report written to docs/. This
command runs it and records what it measured with the artifact, so that the figures travel with the weights
they were measured on (a re-export of other weights drops them: training/export/manifest.py). Options other
than these go to the bench. PYTHONHASHSEED pins pyspellchecker, whose ties between equal candidates fall by set
order.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from training.export.manifest import record_in_manifest

BENCHES = {"speller": "bench.speller_quality", "classifier": "bench.classifier_quality", "poet": "bench.poet_quality",
           "poet_transformer": "bench.poet_quality"}  # fmt: skip
NOT_RECORDED = ("examples", "failures")  # the poet's sample poems: the report shows them, the manifest needs not


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=sorted(BENCHES))
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--write-manifest", action="store_true", help="record the figures in the model's manifest")
    args, rest = parser.parse_known_args(argv)
    bench = importlib.import_module(BENCHES[args.model])
    poet = ["--model", args.model] if args.model == "poet_transformer" else []  # one bench measures either poet
    results = bench.main([*rest, *poet, "--models-dir", str(args.models_dir)])
    command = " ".join(["python -m training.measure", *(argv if argv is not None else sys.argv[1:])])
    block = {"measured_by": command, **{k: v for k, v in results.items() if k not in NOT_RECORDED}}
    if args.write_manifest:
        record_in_manifest(args.models_dir / args.model / "manifest.json", "quality", block)
    return block


if __name__ == "__main__":
    main()
