"""What float32 costs against int8 on this CPU, in process: poet poems/s, speller words/s, classifier names/s.

    PYTHONPATH=. python -m bench.precision_cost

Each model is loaded twice (CHARSERVE_*_PRECISION int8, then float32) and timed on the same inputs, median of
several calls after one to warm up; it also prints the greedy acrostic 春夏秋冬 each precision writes here.
Referenced from docs/design.md ("int8 or float32 by default").
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from app.catalog import CATALOG
from app.settings import Settings


def per_second(call: Callable[[list[Any]], Any], items: list[Any], repeats: int = 5) -> float:
    call(items)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(items)
        times.append(time.perf_counter() - start)
    return len(items) / statistics.median(times)


def main() -> None:
    settings = Settings()
    dictionary = (settings.models_dir / "speller" / "dictionary.txt").read_text().splitlines()
    words = [w for w in (line.split("\t")[0] for line in dictionary[5000:5600:3]) if 4 <= len(w) <= 12]
    typos = [w[:2] + w[3] + w[2] + w[4:] for w in words][:64]  # the third and fourth letters swapped
    names = ["Antonio_Veciana", "Kneuterdijk Palace", "Conus textile", "Ajax F.C.", "The Wall (album)", "Lake Tana"]
    names = (names * 11)[:64]
    for precision in ("int8", "float32"):
        s = Settings(poet_precision=precision, speller_precision=precision, classifier_precision=precision)
        poet, speller, classifier = (
            CATALOG[name].adapter(s.models_dir / name, s) for name in ("poet", "speller", "classifier")
        )
        plans = [poet.plan("qiyan_jueju", acrostic="春夏秋冬") for _ in range(64)]
        poems = per_second(poet.write, plans)
        spelled = per_second(speller.correct_words, typos)
        named = per_second(classifier.batch, names, repeats=9)
        example = "，".join(poet.write(plans[:1])[0].lines)
        print(
            f"{precision}: poet {poems:.1f} poems/s at 64 a batch; speller {spelled:.0f} words/s at 64 a call; "
            f"classifier {named:.0f} names/s at 64 a call; greedy 春夏秋冬: {example}",
            flush=True,
        )


if __name__ == "__main__":
    main()
