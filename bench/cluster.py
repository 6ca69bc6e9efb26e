"""The studio backend: throughput with two Ray workers against one, and the HTTP path's overhead.

Each server is a real ``python -m backend serve --cluster`` subprocess (its own local Ray, one torch
thread a worker) on loopback; the single-process server runs with one torch thread too. Throughput:
N jobs submitted at once, from the first POST to the last final status. Overhead: one job at a time,
POST -> event stream to the final status -> the three PNGs fetched, on the one-worker cluster against
the single-process server, the same jobs. One server runs at a time (two local Rays on one machine
would share its CPUs); rounds alternate.

Writes its own "## Studio backend (Ray)" section into docs/PERFORMANCE.md.

    python bench/cluster.py [--size 256] [--steps 8] [--jobs 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402

from bench.report import machine, table, write_section  # noqa: E402
from tests.support.api import Api, generate_body  # noqa: E402
from tests.support.backend_process import BackendProcess  # noqa: E402

SECTION = "Studio backend (Ray)"


def server(extra: List[str]) -> BackendProcess:
    return BackendProcess(output_dir=Path(tempfile.mkdtemp(prefix="bench-cluster-")),
                          extra_args=["--max-queue", "64", "--no-previews", *extra])


def cluster(workers: int) -> BackendProcess:
    return server(["--cluster", "--cluster-workers", str(workers), "--torch-threads", "1"])


async def throughput(backend: BackendProcess, args: argparse.Namespace, seed: int) -> float:
    """Seconds for ``args.jobs`` jobs submitted at once, until the last one is done."""
    async with aiohttp.ClientSession() as session:
        api = Api(session, backend.url, client="bench")
        await api.wait_final(await api.submit(generate_body(seed=0, size=args.size, steps=2)))  # warm-up
        started = time.perf_counter()
        jobs = [await api.submit(generate_body(seed=seed + n, size=args.size, steps=args.steps))
                for n in range(args.jobs)]
        finals = [await api.wait_final(job) for job in jobs]
        elapsed = time.perf_counter() - started
    assert all(f["state"] == "done" for f in finals), [f.get("error") for f in finals]
    return elapsed


async def round_trips(backend: BackendProcess, args: argparse.Namespace) -> List[float]:
    """Wall seconds of single jobs, one at a time, PNGs fetched."""
    times = []
    async with aiohttp.ClientSession() as session:
        api = Api(session, backend.url, client="bench")
        await api.wait_final(await api.submit(generate_body(seed=0, size=args.size, steps=2)))  # warm-up
        for n in range(args.single_runs):
            started = time.perf_counter()
            final = await api.wait_final(await api.submit(generate_body(seed=500 + n, size=args.size,
                                                                        steps=args.steps)))
            assert final["state"] == "done", final
            for path in final["images"].values():
                await api.image_bytes(path)
            times.append(time.perf_counter() - started)
    return times


def measure(args: argparse.Namespace) -> Dict[str, Any]:
    os.environ["OMP_NUM_THREADS"] = "1"  # the single-process server: one torch thread, like a worker
    got: Dict[str, List[Any]] = {"one": [], "two": [], "single_rt": [], "cluster_rt": []}
    for r in range(args.rounds):
        for kind, backend in (("one", cluster(1)), ("two", cluster(2))):
            with backend:
                got[kind].append(asyncio.run(throughput(backend, args, 1000 * r)))
                if kind == "one":
                    got["cluster_rt"].extend(asyncio.run(round_trips(backend, args)))
            print("round %d: %s worker(s) %.1f s for %d jobs" % (r + 1, kind, got[kind][-1], args.jobs), flush=True)
        with server([]) as single:
            got["single_rt"].extend(asyncio.run(round_trips(single, args)))
    got["load"] = [os.getloadavg()[0]]
    return got


def report(args: argparse.Namespace, got: Dict[str, Any]) -> str:
    pairs = list(zip(got["one"], got["two"]))
    speedups = [one / two for one, two in pairs]
    overhead = statistics.median(got["cluster_rt"]) / statistics.median(got["single_rt"])
    rows = [("round %d" % (i + 1), "%.1f s" % one, "%.1f s" % two, "%.2f" % (one / two))
            for i, (one, two) in enumerate(pairs)]
    met_speed = "met" if statistics.median(speedups) >= 1.7 else "MISSED"
    met_over = "met" if overhead <= 1.15 else "MISSED"
    return "\n".join([
        "Measured by `python bench/cluster.py --size %d --steps %d --jobs %d --rounds %d` on %s; load average "
        "%.1f at the end (the machine is shared)." % (args.size, args.steps, args.jobs, args.rounds, machine(),
                                                      got["load"][0]),
        "",
        "Each server is `serve --cluster --cluster-workers N --torch-threads 1` with its own local Ray, the tiny "
        "model (the servable model; jobs of %d² px, %d steps, previews off); %d jobs submitted at once, timed "
        "from the first POST to the last final status." % (args.size, args.steps, args.jobs),
        "",
        table(rows, ("", "1 worker", "2 workers", "throughput 2 ÷ 1")),
        "",
        "- Throughput, two workers ÷ one: **%.2f** (median of the rounds; target ≥ 1.7: %s)."
        % (statistics.median(speedups), met_speed),
        "- HTTP path, one job at a time (POST → final status → PNGs), one-worker cluster ÷ single-process server "
        "(one torch thread): **%.3f** (medians of %d jobs each: %.2f s ÷ %.2f s; target ≤ 1.15: %s)."
        % (overhead, len(got["cluster_rt"]), statistics.median(got["cluster_rt"]),
           statistics.median(got["single_rt"]), met_over),
        "- The cluster's extra cost per job is the hop to the actor and back: the request and every step's "
        "progress go through Ray's object store, and the images come back pickled to the API server, which "
        "writes them.",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--single-runs", type=int, default=5)
    args = parser.parse_args()
    got = measure(args)
    body = report(args, got)
    print(body)
    write_section(SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
