"""Several nodes behind HAProxy on one PostgreSQL: throughput and CPU per instance (issue 20).

Usage: python bench/cluster.py [--nodes 1,2,3] [--senders 6] [--per-sender 200] [--runs 3]
                               [--fsync] [--json FILE]

For each node count a :class:`dicomwire.services.cluster.Cluster` (a throwaway PostgreSQL,
that many ``dicomwire serve`` processes with one storage root, HAProxy with the DICOM
health check, all on 127.0.0.1) receives ``--senders`` parallel DCMTK ``storescu`` runs of
``--per-sender`` small Secondary Capture instances (8.7 KB, ``dicomwire.testing.corpus``;
new instances each run, so nothing is an overwrite) through HAProxy, ``--runs`` times.
Reported, median of the runs:

- ``inst/s``: instances over the wall time of the slowest sender (spawn to exit);
- ``nodes CPU s/1k``: user + system CPU of every node process (/proc, delta over the run)
  per 1000 instances — the number that sizes a deployment;
- ``PG``, ``HAProxy``, ``senders``: the same for PostgreSQL's processes, HAProxy and the
  storescu processes (``RUSAGE_CHILDREN``), to show where this machine's cores went;
- ``model inst/s per core``: 1000 / nodes CPU s per 1k: what each core given to nodes
  adds when PostgreSQL, HAProxy and the senders run elsewhere.

A run counts only when every storescu exited 0 and the index holds exactly the
instances sent. Files are written without fsync unless ``--fsync`` (the CPU is the
question here, not this machine's disk).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from peers import child_env, tree_cpu

from dicomwire.services.cluster import Cluster
from dicomwire.services.postgres.throwaway import ThrowawayPostgres, start_throwaway_postgres
from dicomwire.testing.corpus import write_corpus


@dataclass
class Measured:
    nodes: int
    instances: int
    seconds: float
    node_cpu: float
    postgres_cpu: float
    haproxy_cpu: float
    sender_cpu: float

    def per_1k(self, cpu: float) -> float:
        return cpu * 1000 / self.instances


def postmaster_pid(server: ThrowawayPostgres) -> int:
    return int((server.directory / "data" / "postmaster.pid").read_text().split()[0])


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def count_instances(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as db:
        row = db.execute("SELECT count(*) FROM instance").fetchone()
        return int(row[0]) if row else 0


def send(port: int, batches: list[list[Path]], timeout: float) -> float:
    """Run one storescu per batch at once through HAProxy; the wall seconds."""
    started = time.perf_counter()
    senders = [
        subprocess.Popen(
            ["storescu", "-aec", "DICOMWIRE", "127.0.0.1", str(port), *map(str, files)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=child_env(),  # TCP_NODELAY=1: DCMTK leaves Nagle on otherwise
        )
        for files in batches
    ]
    failures = []
    for sender in senders:
        _, errors = sender.communicate(timeout=timeout)
        if sender.returncode != 0:
            failures.append(errors.decode(errors="replace")[-500:])
    seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} storescu runs failed: {failures[0]}")
    return seconds


def measure(
    nodes: int, corpus: list[list[list[Path]]], server: ThrowawayPostgres, args: argparse.Namespace
) -> list[Measured]:
    """One cluster of ``nodes``; each run sends its own batches (new instances)."""
    url = server.create_database(f"bench_{nodes}_{os.getpid()}")
    results = []
    with tempfile.TemporaryDirectory(prefix="dicomwire-bench-cluster-") as directory:
        cluster = Cluster(
            Path(directory), nodes=nodes, database_url=url, fsync=args.fsync, verbose=False
        )
        with cluster:
            warm_up = write_corpus(Path(directory) / "warm", 4 * nodes, "small", study=999)
            send(cluster.port, [warm_up[i::nodes] for i in range(nodes)], args.timeout)
            stored = count_instances(url)
            pg = postmaster_pid(server)
            for batches in corpus:
                assert cluster.haproxy is not None
                pids = [node.pid for node in cluster.members]
                before = (
                    sum(tree_cpu(pid) for pid in pids),
                    tree_cpu(pg),
                    tree_cpu(cluster.haproxy.pid),
                    children_cpu(),
                )
                seconds = send(cluster.port, batches, args.timeout)
                after = (
                    sum(tree_cpu(pid) for pid in pids),
                    tree_cpu(pg),
                    tree_cpu(cluster.haproxy.pid),
                    children_cpu(),
                )
                sent = sum(len(files) for files in batches)
                total = count_instances(url)
                if total != stored + sent:
                    raise RuntimeError(f"index holds {total - stored} of {sent} instances sent")
                stored = total
                deltas = [b - a for a, b in zip(before, after, strict=True)]
                results.append(Measured(nodes, sent, seconds, *deltas))
                print(
                    f"  {nodes} node(s): {sent / seconds:7.0f} inst/s, nodes CPU "
                    f"{results[-1].per_1k(deltas[0]):.2f} s/1k",
                    file=sys.stderr,
                )
    return results


def table(results: list[Measured]) -> str:
    lines = [
        "| nodes | inst/s | nodes CPU s/1k | PG CPU s/1k | HAProxy CPU s/1k | senders CPU s/1k "
        "| model inst/s per node core |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for nodes in sorted({r.nodes for r in results}):
        runs = [r for r in results if r.nodes == nodes]

        def median(values: list[float]) -> float:
            return statistics.median(values)

        rate = median([r.instances / r.seconds for r in runs])
        node_cpu = median([r.per_1k(r.node_cpu) for r in runs])
        lines.append(
            f"| {nodes} | {rate:.0f} | {node_cpu:.2f} "
            f"| {median([r.per_1k(r.postgres_cpu) for r in runs]):.2f} "
            f"| {median([r.per_1k(r.haproxy_cpu) for r in runs]):.2f} "
            f"| {median([r.per_1k(r.sender_cpu) for r in runs]):.2f} "
            f"| {1000 / node_cpu:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="1,2,3", help="node counts (1,2,3)")
    parser.add_argument("--senders", type=int, default=6, help="parallel storescu runs (6)")
    parser.add_argument("--per-sender", type=int, default=200, help="instances each (200)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per node count (3)")
    parser.add_argument("--fsync", action="store_true", help="fsync each stored file")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run (300)")
    parser.add_argument("--json", type=Path, help="write every run's numbers here")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.nodes.split(",")]
    server = start_throwaway_postgres()
    try:
        with tempfile.TemporaryDirectory(prefix="dicomwire-bench-corpus-") as directory:
            base = Path(directory)
            results: list[Measured] = []
            for nodes in counts:
                corpus = [  # distinct studies for every run of every node count
                    [
                        write_corpus(
                            base / f"n{nodes}r{run}s{sender}",
                            args.per_sender,
                            "small",
                            study=(nodes * 100 + run) * 100 + sender,
                        )
                        for sender in range(args.senders)
                    ]
                    for run in range(args.runs)
                ]
                results += measure(nodes, corpus, server, args)
    finally:
        server.stop()
    print(
        f"{args.senders} storescu x {args.per_sender} small instances through HAProxy, "
        f"median of {args.runs} runs, {os.cpu_count()} CPUs, fsync {'on' if args.fsync else 'off'}"
    )
    print(table(results))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
