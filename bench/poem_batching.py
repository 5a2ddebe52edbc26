"""/poem under load with poems of mixed lengths: continuous batching against static batching, in one run,
and the model FLOP utilisation each reaches.

    python -m bench.poem_batching --server-cores 0 --client-cores 1 --seconds 20 --repeats 3 [--model poet_transformer]

Two static baselines admit new poems only into an empty batch, so a batch runs as long as its longest
poem: the textbook one (static_padded) goes on computing the rows of poems that have ended, as a padded
batch decodes; the stronger one (static) drops them, so its batch shrinks as poems end. Continuous batching
fills each freed row at the next step. All run the same server code (CHARSERVE_POET_SCHEDULING). FLOP
utilisation: rows computed per second × the step graph's FLOPs per row, against this machine's SGEMM peak
on the server's cores, measured in the same run. Results: docs/poem_batching.{json,md}, README block
`poem-batching` (the LSTM poet; `--model poet_transformer`: docs/poet_transformer_batching.{json,md}).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import pinned_parser, replace_block, run_record, save_report
from bench.load import POEM_BODIES, closed_loop
from bench.serving import median_row, start_server, stop_server

ROOT = Path(__file__).resolve().parent.parent
SCHEDULERS = {
    "static, ended rows computed to the end of the batch": {"CHARSERVE_POET_SCHEDULING": "static_padded"},
    "static, ended rows dropped": {"CHARSERVE_POET_SCHEDULING": "static"},
    "continuous": {},
}


# The cached positions a Transformer step is counted at: about the mean position over the mix's poems.
MEAN_POSITION = 40


def step_flops(manifest: dict) -> float:
    """Multiply-adds ×2 of one character of one poem: every LSTM layer's four gates, then the output layer; for
    a Transformer, every block's projections and MLP and attention over MEAN_POSITION cached positions, then the
    output layer."""
    config = manifest["config"]
    if manifest.get("decoder_state") == "kv_cache":
        d, layers, vocab = config["d_model"], config["layers"], config["vocab_size"]
        block = 4 * d * d + 2 * 4 * d * d + 2 * (MEAN_POSITION + 1) * d  # qkv + proj, MLP, scores and mix
        return 2.0 * (layers * block + d * vocab)
    emb, hidden, layers, vocab = config["emb"], config["hidden"], config["layers"], config["vocab_size"]
    lstm = sum(4 * hidden * ((emb if layer == 0 else hidden) + hidden) for layer in range(layers))
    return 2.0 * (lstm + hidden * vocab)


def sgemm_peak(cores: str) -> float:
    """FLOP/s of a 2048² float32 matrix product on `cores` (numpy's BLAS, one thread per core), best of 5."""
    code = (
        "import numpy as np, time\n"
        "a = np.random.rand(2048, 2048).astype(np.float32); b = a.copy(); a @ b\n"
        "best = min((lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(5))\n"
        "print(2 * 2048**3 / best)\n"
    )
    threads = str(len(cores.split(",")))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
    out = subprocess.run(["taskset", "-c", cores, sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return float(out.stdout.strip())


STEP_CURVE = """
import json, sys, time
from pathlib import Path
import numpy as np
from app.adapters.poet import Poet
from app.settings import Settings
poet = Poet(Path(sys.argv[1]) / sys.argv[3], Settings(intra_op_threads=int(sys.argv[2])))
curve = {}
for rows in (1, 4, 16, 32, 64):
    batch = poet.rows([poet.plan("qiyan_lushi") for _ in range(rows)])
    times = []
    for _ in range(30):
        started = time.perf_counter()
        poet.step(batch)
        times.append(time.perf_counter() - started)
    curve[rows] = round(1000 * float(np.median(times)), 3)
print(json.dumps(curve))
"""


def step_curve(cores: str, models_dir: Path, model: str = "poet") -> dict[str, float]:
    """Median ms of one whole decoding step (graph + masks + choice) by rows in the batch, on `cores`.

    Continuous batching pays where a step costs about the same whatever its rows (a GPU); where the cost
    grows with the rows, a static batch that shrinks as its poems end wastes little."""
    threads = str(len(cores.split(",")))
    command = ["taskset", "-c", cores, sys.executable, "-c", STEP_CURVE, str(models_dir), threads, model]
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def characters(metrics_text: str, model: str = "poet") -> float:
    for line in metrics_text.splitlines():
        if line.startswith(f'charserve_tokens_total{{model="{model}"}}'):
            return float(line.split()[-1])
    return 0.0


def main(argv: list[str] | None = None) -> None:
    parser = pinned_parser(__doc__, port=18500)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--model", choices=["poet", "poet_transformer"], default="poet")
    parser.add_argument("--out", type=Path, help="default: docs/poem_batching.json (poet), docs/<model>_batching.json")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "docs" / ("poem_batching.json" if args.model == "poet" else f"{args.model}_batching.json")
    bodies = [{**body, "model": args.model} for body in POEM_BODIES]
    import httpx

    os.sched_setaffinity(0, {int(c) for c in args.client_cores.split(",")})
    manifest = json.loads((args.models_dir / args.model / "manifest.json").read_text())
    flops = step_flops(manifest)
    peak = sgemm_peak(args.server_cores)
    print(f"SGEMM peak on core(s) {args.server_cores}: {peak / 1e9:.1f} GFLOP/s; {flops / 1e6:.2f} MFLOP a character")
    curve = step_curve(args.server_cores, args.models_dir, args.model)
    print(f"step ms by rows: {curve}")
    runs = []
    for round_ in range(args.repeats):
        for name, env in SCHEDULERS.items():
            env = {**env, "CHARSERVE_MODELS": json.dumps([args.model]), "CHARSERVE_MODELS_DIR": str(args.models_dir),
                   "CHARSERVE_POET_MAX_QUEUE": "1024"}  # fmt: skip
            server = start_server(env, args.server_cores, args.port)
            try:
                base = f"http://127.0.0.1:{args.port}"
                before = characters(httpx.get(f"{base}/metrics").text, args.model)
                started = time.perf_counter()
                result = asyncio.run(closed_loop(f"{base}/poem", bodies, args.concurrency, args.seconds, 0))
                elapsed = time.perf_counter() - started
                written = characters(httpx.get(f"{base}/metrics").text, args.model) - before
            finally:
                stop_server(server)
            row = {"round": round_, "server": name, "endpoint": "/poem", "concurrency": args.concurrency,
                   **result.summary(), "chars_per_s": round(written / elapsed, 1),
                   "flop_utilisation": round(written / elapsed * flops / peak, 4)}  # fmt: skip
            print(json.dumps(row), flush=True)
            runs.append(row)
    rows = [median_row([r for r in runs if r["server"] == name]) for name in SCHEDULERS]
    report = {
        **run_record("bench.poem_batching", argv),
        "server_cores": args.server_cores,
        "client_cores": args.client_cores,
        "sgemm_peak_flops": peak,
        "flops_per_character": flops,
        "step_ms_by_rows": curve,
        "model": {"name": args.model, "version": manifest["version"], "config": manifest["config"]},
        "mix": "a third each: wuyan_jueju (20 characters), qiyan_lushi (64), free form of 100-200 (sampled)",
        "rows": rows,
        "runs": runs,
    }
    save_report(out, report, markdown(report))
    if args.model == "poet":  # the README shows the served default
        replace_block(ROOT / "README.md", "poem-batching", table(report))


def table(report: dict) -> str:
    by = {r["server"]: r for r in report["rows"]}
    lines = [
        "| /poem scheduling | poems/s (median; rounds) | continuous ÷ this | rows computed/s | p50 ms | p99 ms "
        "| FLOP utilisation |",
        "|---|---|---|---|---|---|---|",
    ]
    continuous = by["continuous"]["ok_per_s"]
    for name, r in by.items():
        lines.append(
            f"| {name} | {r['ok_per_s']} ({', '.join(str(x) for x in r['ok_per_s_rounds'])}) | "
            f"{continuous / r['ok_per_s']:.2f}x | {r['chars_per_s']} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{100 * r['flop_utilisation']:.1f}% |"
        )
    ratios = {name: continuous / r["ok_per_s"] for name, r in by.items() if name != "continuous"}
    curve = report["step_ms_by_rows"]
    lines += [
        "",
        "| rows in the batch | " + " | ".join(curve) + " |",
        "|---|" + "---|" * len(curve),
        "| one step, ms (graph, masks, choice; median of 30) | "
        + " | ".join(f"{v:.2f}" for v in curve.values())
        + " |",
        "",
        "Continuous ÷ static, poems/s: "
        + "; ".join(f"{name}: **{ratio:.2f}x**" for name, ratio in ratios.items())
        + ". Rows computed/s counts every row of every step (an ended row of the textbook static batch too: work "
        f"thrown away); FLOP utilisation = rows computed/s × {report['flops_per_character'] / 1e6:.2f} MFLOP a row ÷ "
        f"{report['sgemm_peak_flops'] / 1e9:.1f} GFLOP/s (2048² SGEMM on the server's core, same run). "
        f"`{report['command']}`, {report['measured']}.",
    ]
    return "\n".join(lines) + "\n"


def markdown(report: dict) -> str:
    return "\n".join([
        "# /poem: continuous against static batching",
        "",
        "*Generated by `bench/poem_batching.py`.*",
        "",
        f"Server on core(s) {report['server_cores']}, load generator on core(s) {report['client_cores']}, closed loop, "
        f"{report['rows'][0]['concurrency']} clients, requests mixed: {report['mix']}. "
        f"{report['model'].get('name', 'poet')} {report['model']['version']}: {json.dumps(report['model']['config'])}.",
        "",
        table(report),
    ])  # fmt: skip


if __name__ == "__main__":
    main()
