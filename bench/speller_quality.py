"""Speller quality through the API, beside SymSpell and pyspellchecker on the same words in the same run.

    python -m bench.speller_quality --data ../shared/data/spelling

Sets: the lab's test.json (50 pairs, 43 of which leak into its train.json: reported, never alone),
our held-out split (codespell pairs whose target word no training source contains), and false
positives on the 1,000 most frequent English words (wordfreq, a source none of the systems uses).
By default the app runs in-process on --models-dir; --url measures a running server instead.
`python -m training.measure speller` runs it and records the figures in the model's manifest.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
from spellchecker import SpellChecker
from symspellpy import SymSpell, Verbosity
from wordfreq import top_n_list

from bench.harness import api_client, quality_parser
from training import speller_data

BATCH = 64  # texts per request: the service's default limit


def api_corrector(client: httpx.Client) -> Callable[[list[str]], list[str]]:
    def correct(words: list[str]) -> list[str]:
        out: list[str] = []
        for i in range(0, len(words), BATCH):
            response = client.post("/correct", json={"texts": words[i : i + BATCH]})
            response.raise_for_status()
            out += [r["text"] for r in response.json()["results"]]
        return out

    return correct


def symspell_corrector() -> Callable[[list[str]], list[str]]:
    sym = SymSpell(max_dictionary_edit_distance=2)
    sym.load_dictionary(str(speller_data.symspell_frequency_path()), term_index=0, count_index=1)

    def correct(words: list[str]) -> list[str]:
        return [sym.lookup(w, Verbosity.TOP, max_edit_distance=2, include_unknown=True)[0].term for w in words]

    return correct


def _pyspellchecker_chunk(words: list[str]) -> list[str]:
    checker = SpellChecker(distance=2)
    return [checker.correction(w) or w for w in words]


def pyspellchecker_corrector() -> Callable[[list[str]], list[str]]:
    """pyspellchecker needs seconds for some words at distance 2: spread them over every core."""

    def correct(words: list[str]) -> list[str]:
        workers = os.cpu_count() or 1
        chunks = [words[i::workers] for i in range(workers)]
        with ProcessPoolExecutor(workers) as pool:
            done = list(pool.map(_pyspellchecker_chunk, chunks))
        out = [""] * len(words)
        for i, chunk in enumerate(done):
            out[i::workers] = chunk
        return out

    return correct


def score(correct: Callable[[list[str]], list[str]], pairs: list[tuple[str, str]]) -> dict:
    started = time.perf_counter()
    predictions = correct([w for w, _ in pairs])
    hits = sum(p.lower() == t for p, (_, t) in zip(predictions, pairs, strict=True))
    return {
        "accuracy": round(hits / len(pairs), 4),
        "n": len(pairs),
        "seconds": round(time.perf_counter() - started, 2),
    }


def false_positives(correct: Callable[[list[str]], list[str]], words: list[str]) -> dict:
    changed = [w for w, p in zip(words, correct(words), strict=True) if p.lower() != w]
    return {
        "rate": round(len(changed) / len(words), 4),
        "changed": len(changed),
        "n": len(words),
        "examples": changed[:10],
    }


def run(client: httpx.Client, lab_dir: Path, dictionary: set[str]) -> dict:
    data = speller_data.build(lab_dir)
    common = top_n_list("en", 1000)
    systems = {
        "charserve": api_corrector(client),
        "symspell": symspell_corrector(),
        "pyspellchecker": pyspellchecker_corrector(),
    }
    results: dict = {
        "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        # The ceiling of any speller that answers only with words of our dictionary.
        "heldout_targets_in_dictionary": round(sum(t in dictionary for _, t in data.heldout) / len(data.heldout), 4),
        "systems": {},
    }
    for name, correct in systems.items():
        results["systems"][name] = {
            "lab_test": score(correct, data.lab_test),
            "heldout": score(correct, data.heldout),
            "false_positives_top1000": false_positives(correct, common),
        }
        print(name, json.dumps(results["systems"][name]), flush=True)
    ours, peers = results["systems"]["charserve"], [results["systems"][p] for p in ("symspell", "pyspellchecker")]
    results["heldout_margin_over_best_peer"] = round(
        ours["heldout"]["accuracy"] - max(p["heldout"]["accuracy"] for p in peers), 4
    )
    return results


def markdown(results: dict) -> str:
    rows = [
        "| system | test.json top-1 | held-out top-1 | top-1000 words changed |",
        "|---|---|---|---|",
    ]
    for name, r in results["systems"].items():
        fp = r["false_positives_top1000"]
        rows.append(
            f"| {name} | {r['lab_test']['accuracy']:.3f} (n={r['lab_test']['n']}) | "
            f"{r['heldout']['accuracy']:.3f} (n={r['heldout']['n']}) | {fp['changed']}/{fp['n']} ({fp['rate']:.1%}) |"
        )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = quality_parser(__doc__, Path("../shared/data/spelling"))
    parser.add_argument("--out", type=Path, default=Path("docs/speller_quality.json"))
    args = parser.parse_args(argv)

    dictionary_file = args.models_dir / "speller" / "dictionary.txt"
    dictionary = {line.split("\t")[0] for line in dictionary_file.read_text().splitlines()}
    with api_client(args.url, args.models_dir, "speller") as client:
        results = run(client, args.data, dictionary)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
