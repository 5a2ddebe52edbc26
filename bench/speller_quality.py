"""Speller quality through the API, beside SymSpell and pyspellchecker on the same words in the same run.

    python -m bench.speller_quality --data ../shared/data/spelling

Sets: the lab's test.json (50 pairs, 43 of which leak into its train.json: reported, never alone),
our held-out split (codespell pairs whose target word no training source contains), and false
positives on the 1,000 most frequent English words (wordfreq, a source none of the systems uses), and names
left alone: each DBpedia smaller.test name inside a sentence, the share of sentences a system changes.
By default the app runs in-process on --models-dir; --url measures a running server instead.
`python -m training.measure speller` runs it and records the figures in the model's manifest.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
import urllib.parse
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


# Not the templates training/speller_confidence.py tunes on: the name at the start, inside, at the end.
NAME_TEMPLATES = (
    "I read about {} yesterday.",
    "{} came up twice in the meeting.",
    "Did you see the piece on {}?",
    "Everyone in the office was talking about {}",
)
_WORD = re.compile(r"[A-Za-z]+")


def name_sentences(dbpedia_dir: Path) -> list[str]:
    """Every smaller.test title as written in text, inside one of NAME_TEMPLATES in turn."""
    lines = (dbpedia_dir / "smaller.test").read_text(encoding="utf-8").splitlines()
    names = [urllib.parse.unquote(line.split("\t")[0].strip()).replace("_", " ") for line in lines if line.strip()]
    return [NAME_TEMPLATES[i % len(NAME_TEMPLATES)].replace("{}", name) for i, name in enumerate(names)]


def word_by_word(correct: Callable[[list[str]], list[str]]) -> Callable[[list[str]], list[str]]:
    """A word corrector (the peers) over sentences: each a-z word corrected alone, lowercase, as the peers
    expect; a word whose correction differs only in case is left as written."""

    def correct_texts(texts: list[str]) -> list[str]:
        words = sorted({m.group().lower() for t in texts for m in _WORD.finditer(t)})
        fixed = dict(zip(words, correct(words), strict=True))
        return [
            _WORD.sub(
                lambda m: fixed[m.group().lower()] if fixed[m.group().lower()] != m.group().lower() else m.group(), t
            )
            for t in texts
        ]

    return correct_texts


def names_changed(correct_texts: Callable[[list[str]], list[str]], sentences: list[str]) -> dict:
    changed = [s for s, out in zip(sentences, correct_texts(sentences), strict=True) if out != s]
    return {
        "rate": round(len(changed) / len(sentences), 4),
        "changed": len(changed),
        "n": len(sentences),
        "examples": changed[:10],
    }


SYSTEMS = ("charserve", "symspell", "pyspellchecker")


def run(
    client: httpx.Client,
    lab_dir: Path,
    dictionary: set[str],
    dbpedia_dir: Path | None = None,
    only: tuple[str, ...] = SYSTEMS,
) -> dict:
    data = speller_data.build(lab_dir)
    common = top_n_list("en", 1000)
    correctors = {
        "charserve": lambda: api_corrector(client),
        "symspell": symspell_corrector,
        "pyspellchecker": pyspellchecker_corrector,
    }
    systems = {name: correctors[name]() for name in SYSTEMS if name in only}
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
        if dbpedia_dir is not None:
            sentences = name_sentences(dbpedia_dir)
            texts = correct if name == "charserve" else word_by_word(correct)
            results["systems"][name]["names_changed"] = names_changed(texts, sentences)
        print(name, json.dumps(results["systems"][name]), flush=True)
    ours = results["systems"].get("charserve")
    peers = [results["systems"][p] for p in ("symspell", "pyspellchecker") if p in results["systems"]]
    if ours and peers:
        results["heldout_margin_over_best_peer"] = round(
            ours["heldout"]["accuracy"] - max(p["heldout"]["accuracy"] for p in peers), 4
        )
    return results


def markdown(results: dict) -> str:
    rows = [
        "| system | test.json top-1 | held-out top-1 | top-1000 words changed | name sentences changed |",
        "|---|---|---|---|---|",
    ]
    for name, r in results["systems"].items():
        fp, nm = r["false_positives_top1000"], r.get("names_changed")
        names = f"{nm['changed']}/{nm['n']} ({nm['rate']:.1%})" if nm else "not run"
        rows.append(
            f"| {name} | {r['lab_test']['accuracy']:.3f} (n={r['lab_test']['n']}) | "
            f"{r['heldout']['accuracy']:.3f} (n={r['heldout']['n']}) | {fp['changed']}/{fp['n']} ({fp['rate']:.1%}) | "
            f"{names} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = quality_parser(__doc__, Path("../shared/data/spelling"))
    parser.add_argument("--out", type=Path, default=Path("docs/speller_quality.json"))
    parser.add_argument(
        "--names", type=Path, default=Path("../shared/data/dbpedia"), help="DBpedia folder (smaller.test); 'none': skip"
    )
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help="comma-separated, of " + ", ".join(SYSTEMS) + " (pyspellchecker's names column alone takes 20 min)",
    )
    args = parser.parse_args(argv)
    only = tuple(args.systems.split(","))
    if unknown := set(only) - set(SYSTEMS):
        parser.error(f"--systems: unknown {sorted(unknown)}; choose among {', '.join(SYSTEMS)}")

    dictionary_file = args.models_dir / "speller" / "dictionary.txt"
    dictionary = {line.split("\t")[0] for line in dictionary_file.read_text().splitlines()}
    with api_client(args.url, args.models_dir, "speller") as client:
        results = run(client, args.data, dictionary, None if str(args.names) == "none" else args.names, only)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
