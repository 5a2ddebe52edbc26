"""Fit the speller's confidence (app/adapters/speller/evidence.py) and its threshold on validation data, and
keep both in the manifest.

    python -m training.speller_confidence --data ../shared/data/spelling --names ../shared/data/dbpedia \\
        --write-manifest

Two kinds of unknown words, each inside sentences of several templates (at the start, in the middle, at the
end): misspellings that must change (the validation split of training/speller_data.py, never the held-out
one), each also as a text of its own (a word list), and correct words outside the dictionary that must not
(DBpedia names of smaller.train and smaller.valid; smaller.test is the benchmark's). The served speller decodes
them and computes each candidate's features exactly as it does for a request; a logistic regression
(scikit-learn) fits P(candidate is the intended word) on every candidate, and an isotonic map (the answer map)
turns its out-of-fold probability of an answer into how often such answers are right, as the answers are what
users see and the thresholds decide on. Out-of-fold confidences (folds by word; each fold's regression and map
fitted on the other folds alone) measure the answers' reliability. The regression's out-of-fold probabilities
choose a threshold per context (evidence.CONTEXTS: a lowercase word beside no name, a word with capitals or beside
a name): the lowest pair that corrects the most misspellings while at most --max-names-changed of the name
sentences change, carried through the answer map into the confidence served. It also draws the
precision/recall curve over one threshold for every word and the reliability of the answers (docs/).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import random
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training import speller_data

# The unknown word is {}; names and misspellings get the same templates, so the sentence says nothing itself.
TEMPLATES = (
    "{} was all we talked about.",
    "I read about {} yesterday.",
    "Have you heard of {}?",
    "They wrote to me about {} and the rest.",
    "{}, she said, is what matters.",
    "The report on {} came out last week.",
    "We found it near {}",
    "Nobody expected {} to be there.",
    # A capitalised word just before: misspellings follow proper nouns too, not only names' first words.
    "We met Maria {} yesterday.",
    "In London {} was all the news.",
)


@dataclass
class Sentence:
    text: str
    kind: str  # "misspelling" (in a sentence), "word" (a misspelling as a text of its own) or "name"
    key: str  # what folds group by: the intended word, or the name
    start: int = -1  # where the misspelling stands (misspellings only)
    target: str = ""


def load_names(folder: Path, splits: tuple[str, ...]) -> list[str]:
    """DBpedia titles as written in text: percent-decoded, spaces for underscores."""
    names = []
    for split in splits:
        for line in (folder / f"smaller.{split}").read_text(encoding="utf-8").splitlines():
            title = line.split("\t")[0].strip()
            if title:
                names.append(urllib.parse.unquote(title).replace("_", " "))
    return names


def in_template(word: str, template: str) -> tuple[str, int]:
    """The sentence and where the word stands; a word that opens it is capitalised, as writers do."""
    at = template.index("{}")
    written = word[:1].upper() + word[1:] if at == 0 else word
    return template.replace("{}", written, 1), at


MISSPELT = ("misspelling", "word")


def sentences(pairs: list[tuple[str, str]], names: list[str], seed: int) -> list[Sentence]:
    rng = random.Random(seed)
    out = []
    for wrong, right in pairs:
        text, at = in_template(wrong, rng.choice(TEMPLATES))
        out.append(Sentence(text, "misspelling", right, at, right))
        out.append(Sentence(wrong, "word", right, 0, right))
    for name in names:
        text, _ = in_template(name, rng.choice(TEMPLATES))
        out.append(Sentence(text, "name", name))
    return out


@dataclass
class Rows:
    features: np.ndarray  # [candidates, FEATURES]
    label: np.ndarray  # [candidates] 1: the intended word
    sentence: np.ndarray  # [candidates] which sentence
    answer: np.ndarray  # [candidates] 1: the speller's answer (the others are alternatives)
    context: np.ndarray  # [candidates] where the word stands (evidence.CONTEXTS)
    contraction: np.ndarray  # [sentences] 1: a contraction proposal in it (always applied)


def decode(speller, items: list[Sentence]) -> Rows:
    """The served speller's answers for every unknown word, and each candidate's features and label."""
    from app.adapters.speller.text import CONTRACTIONS

    texts = [s.text for s in items]
    found, unknown = speller.unknown_words(texts)
    answers = {}
    for i in range(0, len(unknown), speller.max_batch_words):
        chunk = unknown[i : i + speller.max_batch_words]
        answers.update(zip(chunk, speller.answer_words(chunk), strict=True))
    features, label, sentence, answer, contexts = [], [], [], [], []
    contraction = np.zeros(len(items), dtype=bool)
    for i, (item, tokens) in enumerate(zip(items, found, strict=True)):
        for token in tokens:
            word = token.text.lower()
            contraction[i] |= word in CONTRACTIONS
            found_answer = answers.get(word)
            if found_answer is None or not found_answer.candidates or found_answer.candidates[0].word == word:
                continue  # nothing proposed
            if item.kind in MISSPELT and token.start != item.start:
                continue  # a template word: not what this sentence measures
            beside_names = speller.beside_names(token, answers)
            x = speller.features(found_answer, token, beside_names)
            features.append(x)
            label += [item.kind in MISSPELT and c.word == item.target for c in found_answer.candidates]
            sentence += [i] * len(x)
            answer += [True] + [False] * (len(x) - 1)
            contexts += [speller.context(token, beside_names)] * len(x)
    return Rows(
        np.concatenate(features), np.array(label), np.array(sentence), np.array(answer), np.array(contexts),
        contraction,
    )  # fmt: skip


def word_groups(rows: Rows, items: list[Sentence]) -> np.ndarray:
    """[candidates] what folds group by: the intended word, or the name."""
    return np.array([items[i].key for i in rows.sentence])


def fold_splits(groups: np.ndarray, folds: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(fitted on, held out) index pairs, folds grouped by `groups` (the intended word or the name): a word's
    candidates, alone and in its sentence, are never on both sides."""
    from sklearn.model_selection import GroupKFold

    return GroupKFold(folds, shuffle=True, random_state=seed).split(groups, groups=groups)


def logistic(features: np.ndarray, label: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=2000).fit(features, label)


def answer_map(probability: np.ndarray, right: np.ndarray) -> dict[str, list[float]]:
    """The monotone map from the logistic probability of an answer to how often such answers are right, as
    breakpoints for np.interp (evidence.Calibration): isotonic regression pools the answers into blocks of equal
    fitted accuracy (a few dozen), each a breakpoint at its mean probability (centred isotonic regression). Between
    two the map rises linearly rather than in the step function's stairs: it keeps a word's candidates apart, and
    a probability between two blocks gets a share of each."""
    from sklearn.isotonic import IsotonicRegression

    order = np.argsort(probability, kind="stable")
    x = probability[order]
    fitted = IsotonicRegression(y_min=0.0, y_max=1.0).fit(x, right[order]).predict(x)
    starts = np.flatnonzero(np.r_[True, np.diff(fitted) != 0])
    means = np.add.reduceat(x, starts) / np.diff(np.r_[starts, len(x)])
    x, y = np.round(means, 6), np.round(fitted[starts], 4)
    kept = np.r_[True, np.diff(x) > 0]  # blocks whose means round alike: the first stands for both
    return {"x": x[kept].tolist(), "y": y[kept].tolist()}


def fit(
    features: np.ndarray, label: np.ndarray, answer: np.ndarray, groups: np.ndarray, folds: int, c: float, seed: int
):
    """The logistic regression on every candidate, and the answer map fitted on its out-of-fold probabilities of
    the answers (folds by word): the map learns how wrong the regression is on words it did not see."""
    probability = np.zeros(len(label))
    for on, held in fold_splits(groups, folds, seed):
        probability[held] = logistic(features[on], label[on], c).predict_proba(features[held])[:, 1]
    return logistic(features, label, c), answer_map(probability[answer], label[answer])


def out_of_fold(rows: Rows, items: list[Sentence], folds: int, c: float, seed: int) -> OutOfFold:
    """Each candidate's confidence from a regression and a map that never saw its word: per outer fold, `fit` on
    the others (its own folds inside), as the served model is fitted on all of validation."""
    groups = word_groups(rows, items)
    logistic_only, calibrated = np.zeros(len(rows.label)), np.zeros(len(rows.label))
    for on, held in fold_splits(groups, folds, seed):
        model, mapping = fit(rows.features[on], rows.label[on], rows.answer[on], groups[on], folds, c, seed)
        logistic_only[held] = model.predict_proba(rows.features[held])[:, 1]
        calibrated[held] = np.interp(logistic_only[held], mapping["x"], mapping["y"])
    return OutOfFold(logistic_only, calibrated)


@dataclass
class OutOfFold:
    logistic: np.ndarray  # [candidates] the regression's probability (speller 1.8.0's confidence)
    calibrated: np.ndarray  # [candidates] through the answer map: the confidence served


def applied_at(rows: Rows, confidence: np.ndarray, thresholds: dict[str, float]) -> np.ndarray:
    """[candidates] 1: an answer applied at its context's threshold."""
    limit = np.zeros(len(rows.label))
    for where, threshold in thresholds.items():
        limit[rows.context == where] = threshold
    return rows.answer & (confidence >= limit)


def tally(rows: Rows, sentences: int, applied: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[sentences] twice, for the answers `applied`: its misspelling fixed; the text changed (a contraction
    counts, since it is always applied)."""
    fixed = np.zeros(sentences, dtype=bool)
    fixed[rows.sentence[applied & rows.label]] = True
    changed = rows.contraction.copy()
    changed[rows.sentence[applied]] = True
    return fixed, changed


def outcomes(
    rows: Rows, items: list[Sentence], confidence: np.ndarray, threshold: float | dict[str, float]
) -> dict[str, float]:
    """At `threshold` (one for every context, or one per context): misspellings corrected (share of all, and of
    those in sentences and alone), name sentences changed, and the precision of the corrections applied (answers
    only)."""
    from app.adapters.speller.evidence import CONTEXTS

    thresholds = threshold if isinstance(threshold, dict) else dict.fromkeys(CONTEXTS, threshold)
    kind = np.array([s.kind for s in items])
    applied = applied_at(rows, confidence, thresholds)
    fixed, changed = tally(rows, len(items), applied)
    at = (
        {"thresholds": {c: round(float(t), 4) for c, t in thresholds.items()}}
        if isinstance(threshold, dict)
        else {"threshold": round(float(threshold), 4)}
    )
    return {
        **at,
        "misspellings_corrected": round(float(fixed[np.isin(kind, MISSPELT)].mean()), 4),
        "in_sentences_corrected": round(float(fixed[kind == "misspelling"].mean()), 4),
        "alone_corrected": round(float(fixed[kind == "word"].mean()), 4),
        "names_changed": round(float(changed[kind == "name"].mean()), 4),
        # None where nothing is applied: precision is undefined there.
        "precision": round(float((applied & rows.label).sum() / applied.sum()), 4) if applied.any() else None,
    }


def choose_thresholds(
    rows: Rows, items: list[Sentence], confidence: np.ndarray, max_names_changed: float, step: float = 0.01
) -> dict[str, float]:
    """The threshold per context (evidence.CONTEXTS) that corrects the most misspellings with at most
    `max_names_changed` of the name sentences changed; among equals the lowest, as one threshold for every word
    is the lowest within the budget: what validation cannot tell apart, the budget for names bounds."""
    from app.adapters.speller.evidence import CONTEXTS

    kind = np.array([s.kind for s in items])
    misspelt, names = np.isin(kind, MISSPELT), kind == "name"
    grid = np.round(np.arange(0, 1 + step / 2, step), 4)
    best: tuple[int, int] | None = None  # misspellings corrected, less the thresholds' sum in steps
    chosen = dict.fromkeys(CONTEXTS, 1.0)
    for pair in itertools.product(grid, repeat=len(CONTEXTS)):
        thresholds = dict(zip(CONTEXTS, pair, strict=True))
        fixed, changed = tally(rows, len(items), applied_at(rows, confidence, thresholds))
        if changed[names].mean() > max_names_changed:
            continue
        score = (int(fixed[misspelt].sum()), -round(float(sum(pair)) / step))
        if best is None or score > best:
            best, chosen = score, {c: float(t) for c, t in thresholds.items()}
    return chosen


def carried(thresholds: dict[str, float], mapping: dict[str, list[float]]) -> dict[str, float]:
    """Thresholds on the regression's probability as thresholds on the served confidence (through the map)."""
    return {c: round(float(np.interp(t, mapping["x"], mapping["y"])), 4) for c, t in thresholds.items()}


def reliability(confidence: np.ndarray, label: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Per confidence bin: answers in it, their mean confidence and the share that were right."""
    edges = np.linspace(0, 1, bins + 1)
    table = []
    for lo, hi in itertools.pairwise(edges):
        inside = (confidence >= lo) & ((confidence < hi) if hi < 1 else (confidence <= hi))
        if inside.any():
            table.append(
                {
                    "bin": f"{lo:.1f}-{hi:.1f}",
                    "n": int(inside.sum()),
                    "mean_confidence": round(float(confidence[inside].mean()), 4),
                    "accuracy": round(float(label[inside].mean()), 4),
                }
            )
    return table


def plot(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve, chosen, one = report["curve"], report["chosen"], report["one_threshold"]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 4.5))
    defined = [p for p in curve if p["precision"] is not None]
    left.plot([p["misspellings_corrected"] for p in defined], [p["precision"] for p in defined], marker=".")
    left.scatter(
        [chosen["misspellings_corrected"]], [chosen["precision"]], color="red", zorder=3, label="chosen, per context"
    )
    left.scatter([one["misspellings_corrected"]], [one["precision"]], color="grey", zorder=3, label="one threshold")
    left.set(xlabel="misspellings corrected (recall)", ylabel="corrections applied that are right (precision)")
    left.set_title("precision / recall over one threshold for every word")
    left.legend()
    thresholds = [p["threshold"] for p in curve]
    middle.plot(thresholds, [p["misspellings_corrected"] for p in curve], label="misspellings corrected")
    middle.plot(thresholds, [p["names_changed"] for p in curve], label="name sentences changed")
    for (where, threshold), style in zip(chosen["thresholds"].items(), ("--", ":"), strict=False):
        middle.axvline(threshold, color="red", linestyle=style, label=f"chosen, {where} {threshold:.2f}")
    middle.set(xlabel="min_confidence", ylabel="share of sentences")
    middle.set_title("validation, out-of-fold confidence")
    middle.legend()
    right.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    for key, label in (("bins_logistic", "logistic regression alone"), ("bins", "with the answer map (served)")):
        bins = report[key]
        right.plot([b["mean_confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", label=label)
    right.set(xlabel="answers' mean confidence, per bin of 0.1", ylabel="answers right", xlim=(0, 1), ylim=(0, 1))
    right.set_title("reliability of the answers, out of fold")
    right.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def markdown(report: dict) -> str:
    chosen, one, none = report["chosen"], report["one_threshold"], report["no_threshold"]
    mapping = report["answer_map"]
    edges = sorted({b["bin"] for key in ("bins_logistic", "bins") for b in report[key]})
    per_context = ", ".join(f"{where} **{t}**" for where, t in chosen["thresholds"].items())
    regression = ", ".join(f"{where} {t}" for where, t in chosen["thresholds_of_the_regression"].items())

    def cells(bins: list[dict], edge: str) -> str:
        """A bin's answers, mean confidence and share right; an empty bin has no row in `bins`."""
        for b in bins:
            if b["bin"] == edge:
                return f"{b['n']} | {b['mean_confidence']:.3f} | {b['accuracy']:.3f}"
        return "0 | | "

    lines = [
        "# Speller confidence: fitted on validation data",
        "",
        f"Measured {report['measured']} with `{report['command']}`.",
        "",
        f"Validation: {report['sentences']['misspelling']} misspellings (the validation split), each in one of "
        f"{len(TEMPLATES)} sentence templates and alone (a text of one word, as in a word list), and "
        f"{report['sentences']['name']} DBpedia names (smaller.train/.valid) in the same templates. Confidence is "
        f"out of fold ({report['folds']} folds by word).",
        "",
        f"Chosen thresholds, per context (app/adapters/speller/evidence.py CONTEXTS: a lowercase word beside no "
        f"name; a word with capitals or beside a name): {per_context}. On the regression's out-of-fold "
        f"probability they are {regression}, the lowest pair that corrects the most misspellings with at most "
        f"{report['max_names_changed']:.0%} of name sentences changed; the answer map, which keeps the order of "
        "answers, carries them into the confidence served, where they apply to the same answers.",
        "",
        "| thresholds | misspellings corrected | in sentences | alone | name sentences changed | precision |",
        "|---|---|---|---|---|---|",
        *(
            f"| {label} | {p['misspellings_corrected']:.4f} | {p['in_sentences_corrected']:.4f} | "
            f"{p['alone_corrected']:.4f} | {p['names_changed']:.4f} | {p['precision']:.4f} |"
            for label, p in (
                (f"per context ({per_context.replace('**', '')})", chosen),
                (f"one for every word ({one['threshold']}, the lowest within the names budget)", one),
                ("none (every answer applied)", none),
            )
        ),
        "",
        "![precision/recall, thresholds, reliability](speller_confidence.png)",
        "",
        "Reliability of the answers' confidence (validation, out of fold: the regression and the answer map of "
        "each fold fitted on the other folds' words, the map on the regression's out-of-fold probabilities there): "
        "the regression alone, fitted on every candidate, and with the answer map, as served.",
        "",
        "| bin | answers | mean confidence | right | answers, with the map | mean confidence | right |",
        "|---|---|---|---|---|---|---|",
        *(f"| {edge} | {cells(report['bins_logistic'], edge)} | {cells(report['bins'], edge)} |" for edge in edges),
        "",
        f"Answer map (logistic probability → confidence), fitted on all of validation: {len(mapping['x'])} "
        "breakpoints, "
        + ", ".join(f"{x:.4f} → {y:.4f}" for x, y in zip(mapping["x"], mapping["y"], strict=True))
        + ".",
        "",
        "Coefficients (features of app/adapters/speller/evidence.py):",
        "",
        "| feature | coefficient |",
        "|---|---|",
        *(f"| {f} | {c:+.3f} |" for f, c in zip(report["features"], report["coef"], strict=True)),
        f"| intercept | {report['intercept']:+.3f} |",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/spelling"))
    parser.add_argument("--names", type=Path, default=Path("../shared/data/dbpedia"))
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--name-sample", type=int, default=5000, help="names drawn from smaller.train/.valid")
    parser.add_argument("--max-names-changed", type=float, default=0.04, help="of validation name sentences")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--c", type=float, default=1.0, help="inverse L2 strength of the logistic regression")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    parser.add_argument("--write-manifest", action="store_true")
    args = parser.parse_args(argv)

    from app.adapters.speller.evidence import FEATURES
    from app.adapters.speller.model import Speller
    from app.settings import Settings

    valid = speller_data.build(args.data).valid
    names = load_names(args.names, ("train", "valid"))
    names = random.Random(args.seed).sample(names, min(args.name_sample, len(names)))
    items = sentences(valid, names, args.seed)
    # Decoded without any threshold: the features never depend on the calibration being fitted.
    speller = Speller(args.models_dir / "speller", Settings(speller_min_confidence=0.0))
    rows = decode(speller, items)
    oof = out_of_fold(rows, items, args.folds, args.c, args.seed)
    confidence = oof.calibrated
    curve = [outcomes(rows, items, confidence, t) for t in np.round(np.arange(0, 1.0001, 0.01), 2)]
    allowed = [p for p in curve if p["names_changed"] <= args.max_names_changed]
    one = min(allowed, key=lambda p: p["threshold"]) if allowed else curve[-1]
    groups = word_groups(rows, items)
    model, mapping = fit(rows.features, rows.label, rows.answer, groups, args.folds, args.c, args.seed)
    # The decision is chosen on the regression's out-of-fold probabilities and carried through the served map.
    # One increasing map keeps the regression's order of answers, so each threshold applies, served, to the
    # answers it applied to on validation; `confidence` went through a map per fold, five orders, none served.
    regression = choose_thresholds(rows, items, oof.logistic, args.max_names_changed)
    chosen = outcomes(rows, items, oof.logistic, regression) | {
        "thresholds": carried(regression, mapping),
        "thresholds_of_the_regression": regression,
    }
    command = "python -m training.speller_confidence --data ../shared/data/spelling --names ../shared/data/dbpedia" + (
        " --write-manifest" if args.write_manifest else ""
    )
    report = {
        "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "features": list(FEATURES),
        "coef": [round(float(c), 6) for c in model.coef_[0]],
        "intercept": round(float(model.intercept_[0]), 6),
        "answer_map": mapping,
        "thresholds": chosen["thresholds"],
        # What a server that knows one threshold only (speller 1.7.0) applies: the strictest.
        "threshold": max(chosen["thresholds"].values()),
        "max_names_changed": args.max_names_changed,
        "folds": args.folds,
        "sentences": {k: sum(s.kind == k for s in items) for k in ("misspelling", "word", "name")},
        "templates": list(TEMPLATES),
        "chosen": chosen,
        "one_threshold": one,
        "no_threshold": outcomes(rows, items, confidence, 0.0),
        "bins": reliability(confidence[rows.answer], rows.label[rows.answer]),
        # The regression's own probability, without the answer map (speller 1.8.0's confidence).
        "bins_logistic": reliability(oof.logistic[rows.answer], rows.label[rows.answer]),
        "curve": curve,
    }
    args.docs.mkdir(parents=True, exist_ok=True)
    (args.docs / "speller_confidence.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.docs / "speller_confidence.md").write_text(markdown(report))
    plot(report, args.docs / "speller_confidence.png")
    print(markdown(report))
    if args.write_manifest:
        path = args.models_dir / "speller" / "manifest.json"
        manifest = json.loads(path.read_text())
        kept = ("features", "coef", "intercept", "answer_map", "thresholds", "threshold", "command")
        manifest["confidence"] = {k: report[k] for k in kept} | {
            "fitted": report["measured"],
            "validation": {"chosen": chosen, "bins": report["bins"], "sentences": report["sentences"]},
        }
        manifest["version"] = "1.9.0"
        path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
