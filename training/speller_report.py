"""Write docs/speller.md and the README's quality table from the speller's manifest and measured quality, so no
figure is copied by hand.

    python -m training.speller_report
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.harness import replace_block
from bench.speller_quality import markdown
from training.tune_speller import DECODING

BAR = 0.10  # held-out top-1 over the better peer that the speller is built to reach


def decoding_table(decoding: dict) -> str:
    rows = [
        "| beam | prior weight | edit penalty | out-of-dictionary penalty | pruning margin | validation top-1 | "
        "decoder rows | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for g in decoding["grid"]:
        oov = "never" if g["oov_penalty"] is None else g["oov_penalty"]
        margin = "none" if g.get("prune_margin") is None else g["prune_margin"]
        setting = f"| {g['beam_size']} | {g['prior_weight']} | {g['edit_penalty']} | {oov} | {margin} "
        rows.append(setting + f"| {g['valid_accuracy']:.4f} | {g.get('decoder_rows', 0):,} | {g['seconds']} |")
    return "\n".join(rows) + "\n"


def quantization_table(block: dict | None) -> str:
    """The manifest's int8-against-float32 record of the same checkpoint, as a table."""
    if not block:
        return "Not measured.\n"
    f, q = block["float32"], block["int8"]
    return "\n".join([
        f"Measured {block['measured']} with `{block['command']}`: decoding as the bundled speller does "
        f"({json.dumps(block['decoding'])}), in process, one thread on one core.",
        "",
        "| graphs | validation accuracy | ms a word, 64 words at once | ms a word, alone | graph files, MB |",
        "|---|---|---|---|---|",
        *(f"| {name} | {r['valid_accuracy']:.4f} | {r['ms_per_word_batch_64']} | {r['ms_per_word_alone']} | "
          f"{r['graph_mb']} |" for name, r in (("float32", f), ("int8", q))),
        "",
        f"int8 ÷ float32 time a word: {q['ms_per_word_batch_64'] / f['ms_per_word_batch_64']:.2f} at 64 words, "
        f"{q['ms_per_word_alone'] / f['ms_per_word_alone']:.2f} alone. Answers that differ: "
        f"{block['answers_differing']} of {block['valid_pairs']} validation words.",
    ]) + "\n"  # fmt: skip


def main() -> None:
    manifest = json.loads(Path("models/speller/manifest.json").read_text())
    quality = json.loads(Path("docs/speller_quality.json").read_text())
    table = markdown(quality)
    ours = quality["systems"]["charserve"]
    margin = quality["heldout_margin_over_best_peer"]
    summary = (
        f"Held-out top-1: **{ours['heldout']['accuracy']:.3f}**, {margin * 100:+.1f} points over the better peer; "
        f"false positives on the 1,000 most frequent English words: "
        f"{ours['false_positives_top1000']['changed']}/1000. Measured {quality['measured']} with "
        f"`{manifest.get('quality', {}).get('measured_by', 'python -m bench.speller_quality')}`.\n"
    )
    verdict = "met" if margin >= BAR else "**not met yet**"
    summary += (
        f"\nThe aim, {BAR * 100:.0f} points over the better peer on held-out data, is {verdict}: "
        f"{margin * 100:+.1f} points. False positives must stay at or under 1%: "
        f"{'met' if ours['false_positives_top1000']['rate'] <= 0.01 else '**not met**'}.\n"
    )
    readme = Path("README.md")
    replace_block(readme, "quality", f"{table}\n{summary}")

    training = manifest["training"]
    doc = Path("docs/speller.md")
    template = Path("docs/speller.template.md").read_text()
    doc.write_text(
        template.replace("{{QUALITY_TABLE}}", table)
        .replace("{{SUMMARY}}", summary)
        .replace("{{DECODING_TABLE}}", decoding_table(manifest["decoding"]))
        .replace("{{INT8}}", quantization_table(manifest.get("quantization")))
        .replace("{{COVERAGE}}", f"{quality['heldout_targets_in_dictionary']:.3f}")
        .replace("{{BEST_EPOCH}}", str(training["best_epoch"]))
        .replace("{{VALID_EXACT}}", f"{training['valid']['exact']:.4f}")
        .replace("{{VALID_BLEU}}", f"{training['valid']['bleu']:.4f}")
        .replace("{{DECODING}}", json.dumps({k: manifest["decoding"].get(k) for k in DECODING}))
    )
    print(f"wrote {readme} and {doc}")


if __name__ == "__main__":
    main()
