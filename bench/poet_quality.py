"""Poet quality: test perplexity through the served step graph, and what /poem writes, checked.

    python -m bench.poet_quality

- Perplexity of the test split (held out by the hash of each poem's id) computed with the ONNX Runtime
  session the service uses, one character per step as it serves: on a CPU the int8 graph; the float graph
  (what a GPU serves) is measured beside it, and one step of each is timed.
- Through the API: every regular form greedy (one request per opening character) and sampled, with
  acrostics; the share that come back exactly in form and with the acrostic honored (must be 100%).
- distinct-2 (distinct character pairs ÷ all pairs, within lines) and the repeated-line rate over 100 poems,
  beside the same figures for 100 real poems of those forms from the test split.

Writes docs/poet_quality.{json,md} and the README block `poet-quality`; `python -m training.measure poet` runs
it and records the figures in the model's manifest.
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
    """exp(mean NLL) of every character of each poem and its <eos>, decoded as served: one step at a time."""
    char_id = poet.char_id
    encoded = sorted((poet_data.encode(t, char_id) for t in texts), key=len)
    total, count = 0.0, 0
    for start in range(0, len(encoded), batch):
        rows = encoded[start : start + batch]
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), -1, np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
        h = np.zeros((poet.layers, len(rows), poet.hidden), np.float32)
        c = h.copy()
        for t in range(width - 1):
            token = np.maximum(ids[:, t], 0)
            logits, h, c = poet.session.run(None, {"token": token, "h": h, "c": c})
            target, live = ids[:, t + 1], ids[:, t + 1] >= 0
            top = logits.max(axis=1, keepdims=True)
            log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
            total -= float((logits[np.arange(len(rows)), np.maximum(target, 0)] - log_z)[live].sum())
            count += int(live.sum())
    return math.exp(total / count)


def step_ms(poets: dict[str, Poet], batch: int = 64, steps: int = 100) -> dict[str, float]:
    """Median time of one step at `batch` rows of each poet's session (the int8 graph, the float one)."""
    timings = {}
    for name, poet in poets.items():
        feeds = {"token": np.full(batch, poet.bos, np.int64),
                 "h": np.zeros((poet.layers, batch, poet.hidden), np.float32)}  # fmt: skip
        feeds["c"] = feeds["h"]
        poet.session.run(None, feeds)
        times = []
        for _ in range(steps):
            started = time.perf_counter()
            poet.session.run(None, feeds)
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


def generate(client: httpx.Client, vocab: list[str], seed: int = 0) -> dict:
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
        response = client.post("/poem", json=body)
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


def run(client: httpx.Client, models_dir: Path, data: poet_data.PoetData) -> dict:
    poet = Poet(models_dir / "poet", Settings(models_dir=models_dir))  # as served here: int8 on a CPU
    started = time.perf_counter()
    ppl = served_perplexity(poet, [p.text for p in data.test])
    ppl_seconds = time.perf_counter() - started
    graphs = {poet.precision: poet}
    other = "float32" if poet.precision == "int8" else "int8"
    if other == "float32" or "poet_step_int8" in poet.manifest.graphs:
        graphs[other] = Poet(models_dir / "poet", Settings(models_dir=models_dir, poet_precision=other))
    perplexities = {name: round(ppl if g is poet else served_perplexity(g, [p.text for p in data.test]), 3)
                    for name, g in graphs.items()}  # fmt: skip
    timing = step_ms(graphs)
    written = generate(client, poet.manifest.vocab)
    real = reference(data)
    sets = {kind: [p["poem"] for p in ps] for kind, ps in written["poems"].items()} | {"real": real}
    every = [p for ps in written["poems"].values() for p in ps]
    acrostics = written["poems"]["acrostic"]
    training = poet.manifest.model_extra.get("training", {})
    return {
        "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": {"version": poet.version, "config": poet.manifest.model_extra.get("config")},
        "test_poems": len(data.test),
        "test_characters": sum(len(p.text) for p in data.test),
        "precision_served": poet.precision,
        "weights": poet.manifest.model_extra.get("weights"),
        "test_perplexity_served": round(ppl, 3),
        "test_perplexity_by_graph": perplexities,
        "test_perplexity_pytorch_float32": training.get("test_perplexity_pytorch"),
        "perplexity_seconds": round(ppl_seconds, 1),
        "step_ms_batch_64": timing,
        "artifact_bytes": sum(f.stat().st_size for f in (models_dir / "poet").iterdir()),
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
    others = [f"| the same, {GRAPHS[name]} | {value:.2f} |" for name, value in by_graph.items() if name != served]
    lines = [
        f"Poet {results['model']['version']}, measured {results['measured']} with `python -m bench.poet_quality`:",
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
        f"| one step at 64 rows on this machine, {' ÷ '.join(f'{n} graph' for n in steps)} (median of 100) | "
        f"{' ÷ '.join(f'{ms:.2f} ms' for ms in steps.values())} |",
        f"| artifact size (`models/poet/`) | {results['artifact_bytes'] / 1e6:.1f} MB |",
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
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    args = parser.parse_args(argv)

    manifest_path = args.models_dir / "poet" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    data = poet_data.build(args.data or poet_data.fetch(), manifest["script"], manifest["data"]["min_count"])
    with api_client(args.url, args.models_dir, "poet") as client:
        results = run(client, args.models_dir, data)
    args.docs.mkdir(parents=True, exist_ok=True)
    (args.docs / "poet_quality.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    table = markdown(results)
    (args.docs / "poet_quality.md").write_text(
        "# Poet quality\n\n*Generated by `bench/poet_quality.py`.*\n\n" + table + examples(results)
    )
    replace_block(Path("README.md"), "poet-quality", table)
    print(table)
    return results


if __name__ == "__main__":
    main()
