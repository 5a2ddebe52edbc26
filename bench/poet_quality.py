"""Poet quality: test perplexity through the served step graph, and what /poem writes, checked.

    python -m bench.poet_quality [--model poet_transformer] [--models-dir models]

- Perplexity of the test split (held out by the hash of each poem's id) computed with the ONNX Runtime
  session the service uses, one character per step as it serves: on a CPU the int8 graph; the float graph
  (what a GPU serves) is measured beside it, and one step of each is timed.
- Through the API: every regular form greedy (one request per opening character) and sampled, with
  acrostics; the share that come back exactly in form and with the acrostic honored (must be 100%).
- distinct-2 (distinct character pairs ÷ all pairs, within lines) and the repeated-line rate over 100 poems,
  beside the same figures for 100 real poems of those forms from the test split.

Either poet: `--model poet` (the LSTM) or `--model poet_transformer`, the same measures on the same test split.
Writes docs/<model>_quality.{json,md} (the LSTM's also the README block `poet-quality`);
`python -m training.measure <model>` runs it and records the figures in the model's manifest.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import re
import time
from pathlib import Path

import httpx
import numpy as np

from app.adapters.poet import FORMS, Poet
from app.settings import Settings
from bench.harness import api_client, quality_parser, replace_block
from training import poet_data

REGULAR = [name for name, form in FORMS.items() if form is not None]
GRAPHS = {"int8": "int8 graph (ONNX Runtime's dynamic quantization; a CPU serves it)",
          "float32": "float graph (float32 compute; a GPU serves it)"}  # fmt: skip
PER_FORM = 25  # 4 forms × 25 = 100 poems per set


def served_perplexity(poet: Poet, texts: list[str], batch: int = 64) -> float:
    """exp(mean NLL) of every character of each poem and its <eos>, decoded as served: one step at a time.

    The LSTM reads each poem whole. The Transformer reads at most its context: a longer poem is read in the
    windows its training evaluated (training/poet_data.windows), each from an empty cache, counting only the
    characters no earlier window counted."""
    context, stride = poet.lm.context, poet.manifest.model_extra.get("eval_stride")
    pieces = []  # a window's ids (inputs and the target after the last) and the first input it counts from
    for ids in (poet_data.encode(t, poet.char_id) for t in texts):
        spans = poet_data.windows(len(ids) - 1, context, stride or context // 2) if context else [(0, len(ids) - 1, 0)]
        pieces += [(ids[start : end + 1], scored - start) for start, end, scored in spans]
    pieces.sort(key=lambda piece: len(piece[0]))
    total, count = 0.0, 0
    for start in range(0, len(pieces), batch):
        rows = pieces[start : start + batch]
        width = max(len(r) for r, _ in rows)
        ids = np.full((len(rows), width), -1, np.int64)
        for i, (r, _) in enumerate(rows):
            ids[i, : len(r)] = r
        counted_from = np.array([first for _, first in rows])
        state = poet.lm.start(len(rows))
        for t in range(width - 1):
            token = np.maximum(ids[:, t], 0)
            logits, state = poet.lm.step(token, state)
            target, live = ids[:, t + 1], (ids[:, t + 1] >= 0) & (t >= counted_from)
            top = logits.max(axis=1, keepdims=True)
            log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
            total -= float((logits[np.arange(len(rows)), np.maximum(target, 0)] - log_z)[live].sum())
            count += int(live.sum())
    return math.exp(total / count)


STEP_AFTER = 48  # characters each row has read when a step is timed: a Transformer's step grows with them


def step_ms(poets: dict[str, Poet], batch: int = 64, steps: int = 100) -> dict[str, float]:
    """Median time of one step at `batch` rows, STEP_AFTER characters into their poems, of each poet's graph (the
    int8 one, the float one)."""
    timings = {}
    for name, poet in poets.items():
        token = np.full(batch, poet.bos, np.int64)
        state = poet.lm.start(batch)
        for _ in range(STEP_AFTER):
            _, state = poet.lm.step(token, state)
        times = []
        for _ in range(steps):
            started = time.perf_counter()
            poet.lm.step(token, state)
            times.append(time.perf_counter() - started)
        timings[name] = round(1000 * float(np.median(times)), 3)
    return timings


def distinct_2(poems: list[str]) -> float:
    pairs = [line[i : i + 2] for poem in poems for line in re.findall(r"[^，。？！；：、]+", poem)
             for i in range(len(line) - 1)]  # fmt: skip
    return len(set(pairs)) / max(len(pairs), 1)


def repeated_line_rate(poems: list[str]) -> float:
    """Share of poems in which some line is the same as another of its lines."""
    lines = [re.findall(r"[^，。？！；：、]+", poem) for poem in poems]
    return sum(len(set(ls)) < len(ls) for ls in lines) / max(len(poems), 1)


def exact_form(body: dict, form: str, acrostic: str) -> tuple[bool, bool]:
    shape = FORMS[form]
    assert shape is not None
    pattern = "".join(f"{'X' * shape.chars}{'，' if i % 2 == 0 else '。'}" for i in range(shape.lines))
    in_form = re.sub(r"[^，。]", "X", body["poem"]) == pattern and all(len(x) == shape.chars for x in body["lines"])
    honored = "".join(line[0] for line in body["lines"][: len(acrostic)]) == acrostic
    return in_form, honored


def generate(client: httpx.Client, vocab: list[str], model: str = "poet", seed: int = 0) -> dict:
    rng = random.Random(seed)
    common = [ch for ch in vocab[4:400] if re.match(r"[\u4e00-\u9fff]", ch)]
    requests = []
    for form in REGULAR:
        lines = FORMS[form].lines  # type: ignore[union-attr]
        for i in range(PER_FORM):
            requests.append(("greedy", form, {"form": form, "prompt": common[i]}, ""))
            requests.append(("sampled", form, {"form": form, "temperature": 0.8, "top_k": 50, "seed": i}, ""))
            acrostic = "".join(rng.sample(common, lines if i % 2 == 0 else 2))
            requests.append(("acrostic", form, {"form": form, "acrostic": acrostic}, acrostic))
    poems: dict[str, list[dict]] = {"greedy": [], "sampled": [], "acrostic": []}
    failures = []
    started = time.perf_counter()
    for kind, form, body, acrostic in requests:
        response = client.post("/poem", json={**body, "model": model})
        response.raise_for_status()
        answer = response.json()
        in_form, honored = exact_form(answer, form, acrostic)
        if not (in_form and honored):
            failures.append({"request": body, "answer": answer})
        poems[kind].append({"request": body, "poem": answer["poem"], "in_form": in_form, "acrostic_ok": honored})
    seconds = time.perf_counter() - started
    return {"poems": poems, "failures": failures, "requests": len(requests), "seconds": round(seconds, 1)}


def reference(data: poet_data.PoetData) -> list[str]:
    """100 real poems of the regular forms from the test split: 25 of each, first by id."""
    chosen = []
    for form in REGULAR:
        shape = FORMS[form]
        pattern = re.compile(
            "".join(f"[^，。]{{{shape.chars}}}{'，' if i % 2 == 0 else '。'}" for i in range(shape.lines)) + "$"  # type: ignore[union-attr]
        )
        chosen += [p.text for p in sorted(data.test, key=lambda p: p.id) if pattern.match(p.text)][:PER_FORM]
    return chosen


def run(client: httpx.Client, models_dir: Path, data: poet_data.PoetData, model: str = "poet") -> dict:
    folder = models_dir / model
    poet = Poet(folder, Settings(models_dir=models_dir))  # as served here: int8 on a CPU
    started = time.perf_counter()
    ppl = served_perplexity(poet, [p.text for p in data.test])
    ppl_seconds = time.perf_counter() - started
    graphs = {poet.precision: poet}
    other = "float32" if poet.precision == "int8" else "int8"
    if other == "float32" or "poet_step_int8" in poet.manifest.graphs:
        graphs[other] = Poet(folder, Settings(models_dir=models_dir, poet_precision=other))
    perplexities = {name: round(ppl if g is poet else served_perplexity(g, [p.text for p in data.test]), 3)
                    for name, g in graphs.items()}  # fmt: skip
    timing = step_ms(graphs)
    written = generate(client, poet.manifest.vocab, model)
    real = reference(data)
    sets = {kind: [p["poem"] for p in ps] for kind, ps in written["poems"].items()} | {"real": real}
    every = [p for ps in written["poems"].values() for p in ps]
    acrostics = written["poems"]["acrostic"]
    training = poet.manifest.model_extra.get("training", {})
    return {
        "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": {
            "name": poet.name,
            "version": poet.version,
            "config": poet.manifest.model_extra.get("config"),
            "architecture": poet.manifest.model_extra.get("architecture"),
        },
        "test_poems": len(data.test),
        "test_characters": sum(len(p.text) for p in data.test),
        "precision_served": poet.precision,
        "weights": poet.manifest.model_extra.get("weights"),
        "test_perplexity_served": round(ppl, 3),
        "test_perplexity_by_graph": perplexities,
        "test_perplexity_pytorch_float32": training.get("test_perplexity_pytorch"),
        "perplexity_seconds": round(ppl_seconds, 1),
        "step_ms_batch_64": timing,
        "artifact_bytes": sum(f.stat().st_size for f in folder.iterdir()),
        "requests": written["requests"],
        "in_form_rate": sum(p["in_form"] for p in every) / len(every),
        "acrostic_rate": sum(p["acrostic_ok"] for p in acrostics) / len(acrostics),
        "failures": written["failures"],
        "distinct_2": {kind: round(distinct_2(ps), 4) for kind, ps in sets.items()},
        "repeated_line_rate": {kind: round(repeated_line_rate(ps), 4) for kind, ps in sets.items()},
        "examples": {kind: ps[::PER_FORM][:4] for kind, ps in written["poems"].items()},
        "generation_seconds": written["seconds"],
    }


def markdown(results: dict) -> str:
    d2, rep = results["distinct_2"], results["repeated_line_rate"]
    torch_ppl = results["test_perplexity_pytorch_float32"]
    by_graph, steps = results["test_perplexity_by_graph"], results["step_ms_batch_64"]
    served = results["precision_served"]
    name = results["model"].get("name", "poet")  # reports from before the Transformer measured the LSTM
    others = [f"| the same, {GRAPHS[name]} | {value:.2f} |" for name, value in by_graph.items() if name != served]
    lines = [
        f"{name} {results['model']['version']} ({results['model'].get('architecture', 'LSTM')}), measured "
        f"{results['measured']} with `python -m bench.poet_quality --model {name}`:",
        "",
        "| measure | value |",
        "|---|---|",
        f"| test perplexity, the graph served on this machine ({results['precision_served']}, ONNX Runtime), "
        f"{results['test_poems']:,} poems, {results['test_characters']:,} characters + `<eos>` | "
        f"**{results['test_perplexity_served']:.2f}** |",
        *others,
        f"| the same in PyTorch, float32 (training's own evaluation) | {torch_ppl:.2f} |"
        if torch_ppl
        else "| the same in PyTorch, float32 | not recorded |",
        f"| one step at 64 rows, {STEP_AFTER} characters in, on this machine, "
        f"{' ÷ '.join(f'{n} graph' for n in steps)} (median of 100) | "
        f"{' ÷ '.join(f'{ms:.2f} ms' for ms in steps.values())} |",
        f"| artifact size (`models/{name}/`) | {results['artifact_bytes'] / 1e6:.1f} MB |",
        f"| requests in exactly their form ({results['requests']}: 4 forms × 25 × greedy, sampled, acrostic) | "
        f"{100 * results['in_form_rate']:.1f}% |",
        f"| acrostics honored ({results['requests'] // 3} requests) | {100 * results['acrostic_rate']:.1f}% |",
        "",
        "| 100 poems (25 of each regular form) | distinct-2 | poems with a repeated line |",
        "|---|---|---|",
    ]
    names = {"greedy": "greedy, one opening character each", "sampled": "sampled, temperature 0.8, top-k 50",
             "acrostic": "greedy acrostics", "real": "real Tang poems, test split"}  # fmt: skip
    for kind, name in names.items():
        lines.append(f"| {name} | {d2[kind]:.3f} | {100 * rep[kind]:.0f}% |")
    return "\n".join(lines) + "\n"


def examples(results: dict) -> str:
    lines = ["", "## Examples", "", "The first poem of each form in each set, as the API returned it.", ""]
    for kind, poems in results["examples"].items():
        lines += [f"### {kind}", "", "| request | poem |", "|---|---|"]
        lines += [f"| `{json.dumps(p['request'], ensure_ascii=False)}` | {p['poem']} |" for p in poems]
        lines.append("")
    if results["failures"]:
        lines += ["## Requests not in form", "", "```json", json.dumps(results["failures"], ensure_ascii=False), "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = quality_parser(__doc__, None, "a folder of poet.tang.*.json (default: fetch with npm)")
    parser.add_argument("--model", choices=["poet", "poet_transformer"], default="poet")
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    args = parser.parse_args(argv)

    manifest_path = args.models_dir / args.model / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    data = poet_data.build(args.data or poet_data.fetch(), manifest["script"], manifest["data"]["min_count"])
    with api_client(args.url, args.models_dir, args.model) as client:
        results = run(client, args.models_dir, data, args.model)
    args.docs.mkdir(parents=True, exist_ok=True)
    (args.docs / f"{args.model}_quality.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    table = markdown(results)
    (args.docs / f"{args.model}_quality.md").write_text(
        "# Poet quality\n\n*Generated by `bench/poet_quality.py`.*\n\n" + table + examples(results)
    )
    if args.model == "poet":  # the README shows the served default
        replace_block(Path("README.md"), "poet-quality", table)
    print(table)
    return results


if __name__ == "__main__":
    main()
