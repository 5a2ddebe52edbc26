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
from sklearn.pipeline import FunctionTransformer, Pipeline, make_pipeline, make_union
from sklearn.svm import LinearSVC

from training import classifier_data
from training.classifier import scores

FORMS: dict[str, Callable[[str], str]] = {"raw title": lambda t: t, "normalised name": classifier_data.normalise}


def word_classes(lexicon: classifier_data.Lexicon) -> Callable[[list[str]], list[str]]:
    """Titles → the lexicon's view of their words as one token a word: its non-zero numbers, each as channel and
    tenths (`0_7` for a word the frequency list has at 0.7, `12_10+25_10` for a WordNet location that is only an
    instance), `unknown` for one it has not. What our lexicon input tells the model, in a form a linear model over
    words reads."""

    def token(word: str) -> str:
        value = lexicon.lookup(word)
        if value is None:
            return "unknown"
        return "+".join(f"{i}_{round(v * 10)}" for i, v in enumerate(value) if v) or "none"

    def tokens(titles: list[str]) -> list[str]:
        return [
            " ".join(token(w.lower()) for w in classifier_data.WORD.findall(classifier_data.normalise(t))) or "none"
            for t in titles
        ]

    return tokens


def fit(names: list[str], labels: list[int], c: float, lexicon: classifier_data.Lexicon | None = None) -> Pipeline:
    """With `lexicon`, its view of the words (and of pairs of them) joins the n-grams."""
    features = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5), sublinear_tf=True)
    if lexicon is not None:
        words = make_pipeline(
            FunctionTransformer(word_classes(lexicon)),
            TfidfVectorizer(analyzer="word", token_pattern=r"\S+", ngram_range=(1, 2), sublinear_tf=True),
        )
        features = make_union(features, words)
    return make_pipeline(features, LinearSVC(C=c)).fit(names, labels)


def run(data_dir: Path, cs: list[float], refit: bool = False, lexicon: classifier_data.Lexicon | None = None) -> dict:
    """Choose the input form and C by validation macro-F1, then score the test split."""
    splits = {s: classifier_data.read_titles(data_dir / f"smaller.{s}") for s in ("train", "valid", "test")}
    tried: dict[str, float] = {}
    for form, prepare in FORMS.items():
        names = [prepare(t) for t, _ in splits["train"]]
        labels = [y for _, y in splits["train"]]
        for c in cs:
            predicted = fit(names, labels, c, lexicon).predict([prepare(t) for t, _ in splits["valid"]])
            tried[f"{form}, C={c}"] = float(f1_score([y for _, y in splits["valid"]], predicted, average="macro"))
    best = max(tried, key=lambda k: tried[k])
    form, c = best.rsplit(", C=", 1)
    prepare = FORMS[form]
    learn = splits["train"] + (splits["valid"] if refit else [])
    model = fit([prepare(t) for t, _ in learn], [y for _, y in learn], float(c), lexicon)
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
    parser.add_argument(
        "--lexicon", type=Path, help="a WordNet dict/ folder or a word<TAB>count list: its view of the words joins"
    )
    args = parser.parse_args(argv)
    lexicon = classifier_data.read_lexicon(args.lexicon) if args.lexicon else None
    result = run(args.data, args.c, args.refit, lexicon)
    print(json.dumps({k: v for k, v in result.items() if k != "predicted"}, indent=2))


if __name__ == "__main__":
    main()
