"""The speller's int8 graphs against float32 ones of the same checkpoint: validation accuracy, how many answers
differ, and the time a word takes on one core, in one run.

    python -m bench.speller_int8 --checkpoint runs/speller2/best.pt --data ../shared/data/spelling --write-manifest

Both are exported afresh from the checkpoint into temporary folders and decode with the bundled speller's
tuned decoding (models/speller/manifest.json), in process, one ONNX Runtime thread on one core. Results:
docs/speller_int8.{json,md}; with --write-manifest, a `quantization` block in the bundled manifest.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from app.settings import Settings
from app.speller import Speller
from bench.harness import record_in_manifest
from bench.load import misspellings
from training import speller_data
from training.export import write_speller_artifact

ROOT = Path(__file__).resolve().parent.parent


def export(checkpoint: Path, out: Path, int8: bool, decoding: dict) -> Speller:
    """The checkpoint's graphs in `out`, with the bundled speller's decoding, loaded for one thread."""
    manifest = write_speller_artifact(checkpoint, out, "bench", int8=int8)
    manifest["decoding"] = decoding
    (out / "manifest.json").write_text(json.dumps(manifest))
    return Speller(out, Settings(intra_op_threads=1))


def ms_per_word(speller: Speller, words: list[str], batch: int) -> float:
    speller.correct_words(words[:batch])  # warm
    started = time.perf_counter()
    for i in range(0, len(words), batch):
        speller.correct_words(words[i : i + batch])
    return round(1000 * (time.perf_counter() - started) / len(words), 3)


def measure(folder: Path, speller: Speller, valid: list[tuple[str, str]], words: list[str]) -> tuple[dict, list[str]]:
    suffix = "_int8" if speller.precision == "int8" else ""
    graphs = (f"encoder{suffix}", f"decoder_step{suffix}")  # the ones it runs
    answers: list[str] = []
    for i in range(0, len(valid), 64):
        answers += speller.correct_words([w.lower() for w, _ in valid[i : i + 64]])
    accuracy = sum(a == t for a, (_, t) in zip(answers, valid, strict=True)) / len(valid)
    return {
        "valid_accuracy": round(accuracy, 4),
        "ms_per_word_batch_64": ms_per_word(speller, words, 64),
        "ms_per_word_alone": ms_per_word(speller, words[:200], 1),
        "graph_mb": round(sum((folder / speller.manifest.graphs[g].file).stat().st_size for g in graphs) / 1e6, 2),
    }, answers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "runs" / "speller2" / "best.pt")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "spelling")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--core", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "speller_int8.json")
    parser.add_argument("--write-manifest", action="store_true")
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {args.core})
    bundled = json.loads((args.models_dir / "speller" / "manifest.json").read_text())
    decoding = bundled.get("decoding", {})
    valid = speller_data.build(args.data).valid
    words = misspellings()
    results, answers = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, int8 in (("float32", False), ("int8", True)):
            folder = Path(tmp) / name
            speller = export(args.checkpoint, folder, int8, decoding)
            results[name], answers[name] = measure(folder, speller, valid, words)
            print(name, json.dumps(results[name]), flush=True)
    report = {
        "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.speller_int8 " + " ".join(argv if argv is not None else sys.argv[1:]),
        "checkpoint": str(args.checkpoint),
        "decoding": {k: decoding.get(k) for k in ("beam_size", "prior_weight", "edit_penalty", "oov_penalty")},
        "valid_pairs": len(valid),
        "answers_differing": sum(a != b for a, b in zip(answers["float32"], answers["int8"], strict=True)),
        **results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    if args.write_manifest:
        measured_by = "python -m bench.speller_int8 --write-manifest"
        record_in_manifest(
            args.models_dir / "speller" / "manifest.json", "quantization", {"measured_by": measured_by, **report}
        )


def markdown(report: dict) -> str:
    f, q = report["float32"], report["int8"]
    return "\n".join([
        "# The speller in int8",
        "",
        "*Generated by `bench/speller_int8.py`.*",
        "",
        f"Measured {report['measured']} with `{report['command']}`: `{report['checkpoint']}` exported twice, "
        "float32 and with int8 weights (ONNX Runtime's dynamic quantization), decoding as the bundled speller "
        f"does ({json.dumps(report['decoding'])}), in process, one thread on one core.",
        "",
        "| graphs | validation accuracy | ms a word, 64 words at once | ms a word, alone | graph files, MB |",
        "|---|---|---|---|---|",
        f"| float32 | {f['valid_accuracy']:.4f} | {f['ms_per_word_batch_64']} | {f['ms_per_word_alone']} | "
        f"{f['graph_mb']} |",
        f"| int8 | {q['valid_accuracy']:.4f} | {q['ms_per_word_batch_64']} | {q['ms_per_word_alone']} | "
        f"{q['graph_mb']} |",
        "",
        f"int8 ÷ float32 time a word: {q['ms_per_word_batch_64'] / f['ms_per_word_batch_64']:.2f} at 64 words, "
        f"{q['ms_per_word_alone'] / f['ms_per_word_alone']:.2f} alone. Answers that differ: "
        f"{report['answers_differing']} of {report['valid_pairs']} validation words. Time: 2,000 one-edit typos "
        "of frequent English words (`bench/load.py`), 200 of them alone.",
    ]) + "\n"  # fmt: skip


if __name__ == "__main__":
    main()
