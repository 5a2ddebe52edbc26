"""The classifier's peer: TF-IDF over character n-grams (1 to 5, `char_wb`) and a linear SVM.

    python -m bench.classifier_baseline --data ../shared/data/dbpedia

Trained on `smaller.train`; its input form and C are chosen on `smaller.valid`, then it is scored on
`smaller.test`. With `refit`, the chosen form and C are trained again on train + valid before the test,
as a refit classifier of ours is (training/classifier.py --refit-from): like is compared with like.
Two input forms are tried: the titles as written (`Kneuterdijk_Palace`, percent-encoded),
and the normalised names our model reads (`Kneuterdijk Palace`). `char_wb` takes n-grams within
whitespace-separated words, so on raw titles, where `_` joins the words, its n-grams also span word
boundaries (`e_(fi`): on this data that is the stronger form, and the peer should be at its strongest.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import f1_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.svm import LinearSVC

from training import classifier_data
from training.classifier import scores

FORMS: dict[str, Callable[[str], str]] = {"raw title": lambda t: t, "normalised name": classifier_data.normalise}


def fit(names: list[str], labels: list[int], c: float) -> Pipeline:
    model = make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5), sublinear_tf=True), LinearSVC(C=c))
    return model.fit(names, labels)


def run(data_dir: Path, cs: list[float], refit: bool = False) -> dict:
    """Choose the input form and C by validation macro-F1, then score the test split."""
    splits = {s: classifier_data.read_titles(data_dir / f"smaller.{s}") for s in ("train", "valid", "test")}
    tried: dict[str, float] = {}
    for form, prepare in FORMS.items():
        names = [prepare(t) for t, _ in splits["train"]]
        labels = [y for _, y in splits["train"]]
        for c in cs:
            predicted = fit(names, labels, c).predict([prepare(t) for t, _ in splits["valid"]])
            tried[f"{form}, C={c}"] = float(f1_score([y for _, y in splits["valid"]], predicted, average="macro"))
    best = max(tried, key=lambda k: tried[k])
    form, c = best.rsplit(", C=", 1)
    prepare = FORMS[form]
    learn = splits["train"] + (splits["valid"] if refit else [])
    model = fit([prepare(t) for t, _ in learn], [y for _, y in learn], float(c))
    predicted = model.predict([prepare(t) for t, _ in splits["test"]]).tolist()
    truth = [y for _, y in splits["test"]]
    trained_on = "train + valid" if refit else "train"
    return {"chosen": best, "trained_on": trained_on, "valid_macro_f1": tried, **scores(truth, predicted),
            "predicted": predicted}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/dbpedia"))
    parser.add_argument("--c", type=float, nargs="+", default=[0.3, 1.0, 3.0, 10.0])
    parser.add_argument("--refit", action="store_true", help="train the chosen form and C on train + valid")
    args = parser.parse_args(argv)
    result = run(args.data, args.c, args.refit)
    print(json.dumps({k: v for k, v in result.items() if k != "predicted"}, indent=2))


if __name__ == "__main__":
    main()
