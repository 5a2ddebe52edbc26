"""Do two processors answer alike? Every model's answers to a fixed set of inputs, written to JSON here, and two
such files compared: the answers a user sees (a poem, a correction, a label), not the digits under them.

    PYTHONPATH=. python -m bench.cpu_agreement --save native.json
    qemu-x86_64 -cpu Haswell .venv/bin/python -m bench.cpu_agreement --save haswell.json   # another x86-64 CPU
    PYTHONPATH=. python -m bench.cpu_agreement --compare native.json haswell.json

ONNX Runtime picks its kernels by what cpuid reports (int8 products with AVX-512 VNNI, AVX2 or SSE2; float32
ones with AVX-512F, FMA3 or SSE), so QEMU's user-mode CPU models answer as those processors would, slowly.
Inputs: greedy acrostics of two forms (ACROSTICS), the bundled dictionary's words with two letters swapped and
the misspellings of the spelling data's test split, and the first NAMES titles of DBpedia's test split (the data
under --data; without it, a few names). CHARSERVE_*_PRECISION variables apply. docs/readme_examples.md
has what it found.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from urllib.parse import unquote

from app.catalog import CATALOG
from app.settings import Settings

ACROSTICS = (
    "春夏秋冬 山高水长 明月清风 风花雪月 天长地久 江山如画 一帆风顺 万事如意 白云深处 青山绿水 落花流水 日月星辰 "
    "琴棋书画 梅兰竹菊 东南西北 春江花月 千山万水 人间四月 海阔天空 长河落日 孤云独去 故人西辞 明月几时 花间一壶"
).split()
FORMS = ("qiyan_jueju", "wuyan_jueju")
NAMES = 300
FALLBACK_NAMES = [
    "Antonio_Veciana",
    "Kneuterdijk Palace",
    "Conus textile",
    "Ajax F.C.",
    "The Wall (album)",
    "Lake Tana",
]


def misspellings(data: Path, settings: Settings) -> list[str]:
    """The bundled dictionary's words with their third and fourth letters swapped, and the test split's."""
    dictionary = (settings.models_dir / "speller" / "dictionary.txt").read_text().splitlines()
    words = [w for w in (line.split("\t")[0] for line in dictionary[5000:5600:3]) if 4 <= len(w) <= 12]
    swapped = [w[:2] + w[3] + w[2] + w[4:] for w in words]
    test = data / "spelling" / "test.json"
    tested = [wrong for pair in json.loads(test.read_text()) for wrong in pair["input"]] if test.exists() else []
    return list(dict.fromkeys(swapped + tested))


def names(data: Path) -> list[str]:
    test = data / "dbpedia" / "smaller.test"
    if not test.exists():
        return FALLBACK_NAMES
    lines = test.read_text(encoding="utf-8").splitlines()[:NAMES]
    return [unquote(line.split("\t")[0]).replace("_", " ") for line in lines]


def answers(data: Path) -> dict[str, dict[str, str]]:
    """Input → what the user is shown, per model."""
    settings = Settings()
    poet, speller, classifier = (
        CATALOG[name].adapter(settings.models_dir / name, settings) for name in ("poet", "speller", "classifier")
    )
    plans = [(form, word) for form in FORMS for word in ACROSTICS]
    poems = poet.write([poet.plan(form, acrostic=word) for form, word in plans])
    typos = misspellings(data, settings)
    titles = names(data)
    return {
        "poet": {f"{form} {word}": p.poem for (form, word), p in zip(plans, poems, strict=True)},
        "speller": dict(zip(typos, speller.correct_words(typos), strict=True)),
        "classifier": {t: c.label for t, c in zip(titles, classifier.batch(titles), strict=True)},
    }


def compare(first: Path, second: Path) -> int:
    a, b = (json.loads(p.read_text(encoding="utf-8")) for p in (first, second))
    differing = 0
    for model in a:
        keys = a[model].keys() & b[model].keys()
        apart = sorted(k for k in keys if a[model][k] != b[model][k])
        differing += len(apart)
        print(f"{model}: {len(keys) - len(apart)} of {len(keys)} alike")
        for key in apart:
            print(f"  {key}: {a[model][key]} | {b[model][key]}")
    return 1 if differing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="spelling/ and dbpedia/")
    parser.add_argument("--save", type=Path, help="write this machine's answers here (JSON)")
    parser.add_argument("--compare", type=Path, nargs=2, metavar="JSON", help="two saved files to compare")
    args = parser.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    if not args.save:
        parser.error("--save or --compare")
    args.save.write_text(json.dumps(answers(args.data), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
