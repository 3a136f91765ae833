"""Autoscaling shown, not assumed: replicas of each deployment over time under a load ramp.

    python bench/autoscale.py                           # about 4 minutes on 2 cores
    python bench/autoscale.py --plot /tmp/autoscale.png

Runs the qwen3-search application on a local Ray (fractional logical CPUs, tiny random-weight
Qwen3 models written to a temporary folder) with short autoscaling delays, drives a load ramp
up and then down against /v1/embeddings and /v1/rerank over loopback HTTP (closed-loop clients:
each sends its next request when the last one is answered), and samples `serve.status()` once a
second: per deployment, the replicas Serve wants (every state but STOPPING: its scaling
decision) and the RUNNING ones (serving). It prints a timeline (replicas, throughput, latency),
saves a plot, and checks each model deployment: the decision to scale up must come within
upscale_delay_s + look_back_period_s + DECISION_SLACK_S of the load passing the target, the
decision to scale down within downscale_delay_s + look_back_period_s + DECISION_SLACK_S of the
load stopping, and the RUNNING count must really rise and come back to min_replicas. Exit
status 1 if not.

Each model batch waits MODEL_BATCH_WAIT_MS, standing in for the GPU time of a large batch: a
replica is busy without using the two shared cores, so that more replicas really serve more
requests, and the request rate stays low enough for new replicas (a Python process importing
torch: about 15 s here, 45 s when four start at once) to start while the load runs. The control
loop shown (Serve's autoscaler, driven by ongoing requests) is the one of a GPU cluster, where
KubeRay's autoscaler then adds a GPU pod for each replica that does not fit.
"""

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

# Serve's replicas and handles push autoscaling metrics every 10 s by default; 1 s lets delays of a
# few seconds show. Set before Ray starts, so that every Ray process inherits it.
METRIC_PUSH_ENV = {
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
}
os.environ.update(METRIC_PUSH_ENV)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import httpx  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._local_app import local_app  # noqa: E402
from bench._measure import percentile  # noqa: E402
from bench._tokenizer import add_stand_in_option, benchmark_tokenizer  # noqa: E402

APP_NAME = "qwen3-search"
MODEL_DEPLOYMENTS = ("Embedder", "Reranker")
SHOWN_DEPLOYMENTS = ("Embedder", "Reranker", "APIIngress")
AUTOSCALING = {
    "min_replicas": 1,
    "max_replicas": 4,
    "target_ongoing_requests": 2,
    "upscale_delay_s": 3,
    "downscale_delay_s": 15,
    "look_back_period_s": 12,  # must exceed the (deprecated) metrics_interval_s default of 10 s
}
# Allowance on top of delay + look-back for a decision: metric pushes (1 s), the sampling period.
DECISION_SLACK_S = 5.0
# A RUNNING replica must follow its decision within this (start a process, import torch, load).
REPLICA_START_LIMIT_S = 60.0
MODEL_BATCH_WAIT_MS = 1000
API_KEY = "autoscale-bench-key"
SAMPLE_PERIOD_S = 1.0
TEXTS_PER_REQUEST = 4


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    clients: int  # per route


# Up: one client per route (under the target), then 4 and 10 (2 and 4+ replicas' worth at the target);
# down: 3 (2 replicas' worth), then none. The peak is long because replicas take 15-50 s to start
# on two busy cores.
PHASES = [Phase("warm", 10, 1), Phase("ramp up", 20, 4), Phase("peak", 70, 10), Phase("ramp down", 30, 3)]


@dataclass
class Sample:
    t: float
    running: dict[str, int]
    wanted: dict[str, int]  # every replica state but STOPPING: what Serve decided
    clients: int


@dataclass
class Request:
    t: float  # when the answer arrived
    route: str
    latency_s: float
    status: int


@dataclass
class Run:
    started: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    clients: int = 0
    phase_starts: list[tuple[str, float]] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.started


def app_args(folders: dict[str, Path], storage: Path) -> dict[str, Any]:
    """Small fractional replicas so that up to 4 of each model fit 6 logical CPUs."""
    model_deployment = {"autoscaling_config": AUTOSCALING, "max_ongoing_requests": 4, "max_queued_requests": 256,
                        "ray_actor_options": {"num_cpus": 0.5}}
    model = {"torch_threads": 1, "batch_wait_ms": MODEL_BATCH_WAIT_MS, "deployment": model_deployment}
    return {
        "embedding_models": [{"model": str(folders["embedding"]), "name": "tiny-embedding", **model}],
        "reranker_models": [{"model": str(folders["reranker"]), "name": "tiny-reranker", **model}],
        "index": {"storage_path": str(storage), "shards": 1,
                  "deployment": {"ray_actor_options": {"num_cpus": 0.1}, "max_ongoing_requests": 64}},
        "pipeline": {"ray_actor_options": {"num_cpus": 0.1}, "max_ongoing_requests": 64, "max_queued_requests": -1},
        "ingress": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.25}, "max_ongoing_requests": 256,
                    "max_queued_requests": -1},
    }


def request_bodies(count: int) -> list[tuple[str, dict[str, Any]]]:
    words = "cells genes protein cancer immune signal pathway tumour receptor dose trial response".split()
    bodies: list[tuple[str, dict[str, Any]]] = []
    for i in range(count):
        texts = [" ".join(words[(i + j + k) % len(words)] for k in range(6 + (i + j) % 10))
                 for j in range(TEXTS_PER_REQUEST)]
        bodies.append(("/v1/embeddings", {"input": texts}))
        bodies.append(("/v1/rerank", {"query": f"which {words[i % len(words)]} responds?", "documents": texts}))
    return bodies


async def client(http: httpx.AsyncClient, run: Run, route: str, bodies: list[dict[str, Any]], until: float) -> None:
    i = 0
    while run.now() < until:
        started = time.perf_counter()
        try:
            status = (await http.post(route, json=bodies[i % len(bodies)])).status_code
        except httpx.HTTPError:
            status = 0
        run.requests.append(Request(run.now(), route, time.perf_counter() - started, status))
        i += 1


async def sample_replicas(run: Run, app_name: str, stop: asyncio.Event) -> None:
    from ray import serve

    while not stop.is_set():
        status = await asyncio.to_thread(serve.status)
        deployments = status.applications[app_name].deployments
        running = {name: sum(n for state, n in d.replica_states.items() if state == "RUNNING")
                   for name, d in deployments.items()}
        wanted = {name: sum(n for state, n in d.replica_states.items() if state != "STOPPING")
                  for name, d in deployments.items()}
        run.samples.append(Sample(run.now(), running, wanted, run.clients))
        await asyncio.sleep(SAMPLE_PERIOD_S)


def at_min(sample: Sample) -> bool:
    return all(sample.running.get(d, 0) == sample.wanted.get(d, 0) == AUTOSCALING["min_replicas"]
               for d in MODEL_DEPLOYMENTS)


async def drive_load(url: str, run: Run, app_name: str, cooldown_s: float) -> None:
    bodies = request_bodies(64)
    by_route = {route: [b for r, b in bodies if r == route] for route in ("/v1/embeddings", "/v1/rerank")}
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits, headers=headers, trust_env=False) as http:
        sampler = asyncio.create_task(sample_replicas(run, app_name, stop))
        tasks: list[asyncio.Task[None]] = []
        for phase in PHASES:
            run.phase_starts.append((phase.name, run.now()))
            run.clients = phase.clients
            until = run.now() + phase.seconds
            tasks += [asyncio.create_task(client(http, run, route, route_bodies, until))
                      for route, route_bodies in by_route.items() for _ in range(phase.clients)]
            await asyncio.sleep(phase.seconds)
        run.phase_starts.append(("idle", run.now()))
        run.clients = 0
        await asyncio.gather(*tasks)
        # Idle until both models are back at min_replicas for a few samples, or the cooldown ends.
        idle_started = run.now()
        while run.now() - idle_started < cooldown_s:
            recent = [s for s in run.samples if s.t > idle_started][-5:]
            if len(recent) == 5 and all(at_min(s) for s in recent):
                break
            await asyncio.sleep(SAMPLE_PERIOD_S)
        stop.set()
        await sampler


@dataclass
class Verdict:
    """One model deployment's scaling, in seconds from the load passing the target (up) or stopping
    (down); None: never happened."""

    deployment: str
    peak_running: int
    up_decided_s: float | None
    up_running_s: float | None
    down_decided_s: float | None
    down_running_s: float | None
    up_bound_s: float = AUTOSCALING["upscale_delay_s"] + AUTOSCALING["look_back_period_s"] + DECISION_SLACK_S
    down_bound_s: float = AUTOSCALING["downscale_delay_s"] + AUTOSCALING["look_back_period_s"] + DECISION_SLACK_S

    def problems(self) -> list[str]:
        found = []
        if self.up_decided_s is None or self.up_decided_s > self.up_bound_s:
            found.append(f"no scale-up decision within {self.up_bound_s:g} s")
        if self.up_running_s is None or self.up_decided_s is None \
                or self.up_running_s - self.up_decided_s > REPLICA_START_LIMIT_S:
            found.append(f"no extra RUNNING replica within {REPLICA_START_LIMIT_S:g} s of the decision")
        if self.down_decided_s is None or self.down_decided_s > self.down_bound_s:
            found.append(f"no scale-down decision within {self.down_bound_s:g} s")
        if self.down_running_s is None:
            found.append("RUNNING replicas never came back to min_replicas")
        return found


def judge(run: Run) -> list[Verdict]:
    """Up: from the first phase whose clients exceed what min_replicas hold at the target.
    Down: from the start of the idle phase, until back at min_replicas."""
    minimum, target = AUTOSCALING["min_replicas"], AUTOSCALING["target_ongoing_requests"]
    starts = dict(run.phase_starts)
    overload_phase = next(p.name for p in PHASES if p.clients > minimum * target)
    load_starts, idle_starts = starts[overload_phase], starts["idle"]

    def first(deployment: str, since: float, counts: str, test: Any) -> float | None:
        return next((s.t - since for s in run.samples
                     if s.t >= since and test(getattr(s, counts).get(deployment, 0))), None)

    return [Verdict(
        deployment, max(s.running.get(deployment, 0) for s in run.samples),
        first(deployment, load_starts, "wanted", lambda n: n > minimum),
        first(deployment, load_starts, "running", lambda n: n > minimum),
        first(deployment, idle_starts, "wanted", lambda n: n == minimum),
        first(deployment, idle_starts, "running", lambda n: n == minimum),
    ) for deployment in MODEL_DEPLOYMENTS]


def seconds(value: float | None) -> str:
    return f"{value:.1f} s" if value is not None else "never"


def timeline_rows(run: Run, bucket_s: float) -> list[dict[str, Any]]:
    end = max(s.t for s in run.samples)
    rows = []
    t = 0.0
    while t < end:
        samples = [s for s in run.samples if t <= s.t < t + bucket_s]
        requests = [r for r in run.requests if t <= r.t < t + bucket_s]
        if samples:
            last = samples[-1]
            row: dict[str, Any] = {"t": t, "clients": max(s.clients for s in samples), "requests": len(requests),
                                   "errors": sum(r.status != 200 for r in requests)}
            row |= {d: f"{last.running.get(d, 0)}/{last.wanted.get(d, 0)}" for d in SHOWN_DEPLOYMENTS}
            for route, key in (("/v1/embeddings", "embed"), ("/v1/rerank", "rerank")):
                latencies = [r.latency_s * 1000 for r in requests if r.route == route and r.status == 200]
                row[f"{key}_p50"] = statistics.median(latencies) if latencies else None
                row[f"{key}_p95"] = percentile(latencies, 0.95) if latencies else None
            rows.append(row)
        t += bucket_s
    return rows


def print_timeline(run: Run, bucket_s: float) -> None:
    def ms(p50: float | None, p95: float | None) -> str:
        return f"{p50:6.0f} / {p95:6.0f}" if p50 is not None and p95 is not None else f"{'-':>6} / {'-':>6}"

    print(f"\nTimeline ({bucket_s:g} s buckets; replicas RUNNING/decided at the end of the bucket; "
          "clients per route; latency p50 / p95 ms)")
    print("|   t s | clients | Embedder | Reranker | APIIngress | req/s |  /v1/embeddings |      /v1/rerank | errors |")
    print("|------:|--------:|---------:|---------:|-----------:|------:|----------------:|----------------:|-------:|")
    for row in timeline_rows(run, bucket_s):
        print(f"| {row['t']:5.0f} | {row['clients']:7d} | {row['Embedder']:>8} | {row['Reranker']:>8} | "
              f"{row['APIIngress']:>10} | {row['requests'] / bucket_s:5.1f} | {ms(row['embed_p50'], row['embed_p95'])} "
              f"| {ms(row['rerank_p50'], row['rerank_p95'])} | {row['errors']:6d} |")


def save_plot(run: Run, verdicts: list[Verdict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax_replicas, ax_latency) = plt.subplots(2, 1, figsize=(13, 8), sharex=True,
                                                  gridspec_kw={"height_ratios": [3, 2]})
    times = [s.t for s in run.samples]
    colors = {"Embedder": "tab:blue", "Reranker": "tab:orange", "APIIngress": "tab:gray"}
    offsets = {"Embedder": -0.05, "Reranker": 0.05, "APIIngress": 0.0}  # keeps equal counts apart
    for deployment in SHOWN_DEPLOYMENTS:
        color, offset = colors[deployment], offsets[deployment]
        if deployment in MODEL_DEPLOYMENTS:
            ax_replicas.step(times, [s.wanted.get(deployment, 0) + offset for s in run.samples], where="post",
                             color=color, linewidth=1.2, linestyle=":", label=f"{deployment}: decided")
        ax_replicas.step(times, [s.running.get(deployment, 0) + offset for s in run.samples], where="post",
                         color=color, linewidth=2.4 if deployment in MODEL_DEPLOYMENTS else 1.2,
                         label=f"{deployment}: RUNNING")
    ax_clients = ax_replicas.twinx()
    ax_clients.fill_between(times, [s.clients for s in run.samples], step="post", color="tab:green", alpha=0.12,
                            label="load: clients per route")
    ax_clients.set_ylabel("concurrent clients per route", color="tab:green")
    ax_clients.set_ylim(0, max(p.clients for p in PHASES) * 1.3)
    ax_replicas.set_zorder(ax_clients.get_zorder() + 1)  # lines above the load shading
    ax_replicas.patch.set_visible(False)
    ax_replicas.set_ylabel("replicas")
    ax_replicas.set_ylim(0, AUTOSCALING["max_replicas"] + 1)
    ax_replicas.axhline(AUTOSCALING["max_replicas"], color="black", linewidth=0.6, alpha=0.4)
    for name, t in run.phase_starts:
        for ax in (ax_replicas, ax_latency):
            ax.axvline(t, color="black", linewidth=0.6, alpha=0.3)
        ax_replicas.text(t + 0.7, AUTOSCALING["max_replicas"] + 0.6, name, fontsize=9)
    handles = ax_replicas.get_legend_handles_labels()[0] + ax_clients.get_legend_handles_labels()[0]
    ax_replicas.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.07, 1.0), fontsize=9)
    settings = ", ".join(f"{k} {v}" for k, v in AUTOSCALING.items())
    ax_replicas.set_title(f"{title}\nautoscaling_config: {settings}", fontsize=10)
    summary = "\n".join(f"{v.deployment}: up decided {seconds(v.up_decided_s)}, running {seconds(v.up_running_s)};"
                        f"\n  down decided {seconds(v.down_decided_s)}, at min {seconds(v.down_running_s)}"
                        for v in verdicts)
    ax_replicas.text(1.07, 0.0, summary + "\n(seconds after the load\npassed the target / stopped)",
                     transform=ax_replicas.transAxes, fontsize=8.5, va="bottom")

    rows = timeline_rows(run, 2.0)
    for key, label, color in (("embed", "/v1/embeddings", "tab:blue"), ("rerank", "/v1/rerank", "tab:orange")):
        points = [(r["t"] + 1, r[f"{key}_p50"], r[f"{key}_p95"]) for r in rows if r[f"{key}_p50"] is not None]
        ax_latency.plot([p[0] for p in points], [p[1] for p in points], color=color, label=f"{label} p50")
        ax_latency.plot([p[0] for p in points], [p[2] for p in points], color=color, alpha=0.45, linestyle="--",
                        label=f"{label} p95")
    ax_latency.set_yscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
    ax_latency.yaxis.set_major_formatter(plain)
    ax_latency.yaxis.set_minor_formatter(plain)
    ax_latency.set_ylabel("latency, ms (2 s buckets)")
    ax_latency.set_xlabel("seconds since the load started")
    ax_latency.legend(loc="upper left", bbox_to_anchor=(1.07, 1.0), fontsize=9)
    ax_latency.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plot", type=Path, default=Path("docs/autoscale.png"), help="where to save the PNG")
    parser.add_argument("--num-cpus", type=int, default=6, help="logical CPUs of the local Ray")
    parser.add_argument("--cooldown", type=float, default=60.0, help="seconds to wait for the scale-down at most")
    parser.add_argument("--bucket", type=float, default=5.0, help="seconds per timeline row")
    add_stand_in_option(parser)
    args = parser.parse_args()

    from deployments.engine.random_model import write_random_model

    tokenizer = benchmark_tokenizer(args)
    work = Path(tempfile.mkdtemp(prefix="qwen3-search-autoscale-"))
    folders = {kind: write_random_model(work / kind, kind=kind, size="tiny", tokenizer=tokenizer)
               for kind in ("embedding", "reranker")}
    title = (f"qwen3-search autoscaling on local Ray, {date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
             f"{args.num_cpus} logical CPUs, tiny random Qwen3 models")
    print(title)
    print(f"autoscaling_config of Embedder and Reranker: {AUTOSCALING}; max_ongoing_requests 4, num_cpus 0.5")
    print("load (clients per route): " + ", ".join(f"{p.name} {p.clients} for {p.seconds:g} s" for p in PHASES)
          + f", then 0 until both models are back at min_replicas (at most {args.cooldown:g} s)")

    env = {"QWEN3_SEARCH_API_KEYS": API_KEY, **METRIC_PUSH_ENV}
    try:
        with local_app(app_args(folders, work / "index"), num_cpus=args.num_cpus, env=env, name=APP_NAME) as url:
            run = Run()  # t = 0 when the application is up and the load starts
            asyncio.run(drive_load(url, run, APP_NAME, args.cooldown))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print_timeline(run, args.bucket)
    verdicts = judge(run)
    print("\nScaling, in seconds after the load passed the target (up) or stopped (down); a decision is due "
          f"within delay + look_back_period_s + {DECISION_SLACK_S:g} s:")
    for v in verdicts:
        print(f"  {v.deployment:9s} peak {v.peak_running} RUNNING; up: decided {seconds(v.up_decided_s)} "
              f"(due {v.up_bound_s:g} s), running {seconds(v.up_running_s)}; down: decided "
              f"{seconds(v.down_decided_s)} (due {v.down_bound_s:g} s), running {seconds(v.down_running_s)}: "
              f"{'; '.join(v.problems()) or 'OK'}")
    errors = sum(r.status != 200 for r in run.requests)
    print(f"requests: {len(run.requests)}, non-200: {errors}")
    save_plot(run, verdicts, args.plot, title)
    print(f"plot: {args.plot}")
    return 1 if any(v.problems() for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
