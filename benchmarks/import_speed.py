"""Wall time and peak memory of importing a No More Marking-shaped export, per database.

Generates an NMM decisions export (``id, timeTaken, createdAt, judgeId, judge, chosen,
notChosen, isLeft, exclude, task``; times in ms) of ``--decisions`` decisions over
``--items`` items — a balanced random design (every item in the same number of rounds of
random pairings) with Bradley–Terry outcomes from abilities N(0, 1), 200 judges — and
imports it as ``cj judgements import`` does: read (:func:`cjlib.importing.read_judgement_file`),
validate and write in one transaction (bulk COPY on PostgreSQL, executemany on SQLite), then
finalize (BT fit, scores, events, COMPLETE_STABLE). The BT fit alone is timed too, outside the
pipeline, to show its share of finalizing.

Each backend runs in its own subprocess so that its peak resident memory (``ru_maxrss``) is
its own. The PostgreSQL database is created fresh on ``CJ_TEST_DATABASE_URL``'s server and
dropped afterwards. Target (issue 12): 1,000,000 decisions over 50,000 items in ≤ 60 s on
PostgreSQL.

    python benchmarks/import_speed.py                                # 1,000,000 / 50,000
    python benchmarks/import_speed.py --decisions 100000 --items 5000
    python benchmarks/import_speed.py --backends postgresql
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

JUDGES = 200
BACKENDS = ("postgresql", "sqlite")
TARGET_SECONDS = 60.0
#: PostgreSQL server to create the throw-away database on, as the test suite's default.
DEFAULT_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def generate_export(path: Path, decisions: int, items: int, seed: int = 12) -> None:
    """Write an NMM-shaped decisions export of ``decisions`` rows over ``items`` items."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, 1.0, items)
    half = items // 2
    rounds = -(-decisions // half)
    order = rng.permuted(np.tile(np.arange(items), (rounds, 1)), axis=1)
    left = order[:, :half].ravel()[:decisions]
    right = order[:, half : 2 * half].ravel()[:decisions]
    left_wins = rng.random(decisions) < 1.0 / (1.0 + np.exp(theta[right] - theta[left]))
    ids = np.char.add("c", np.char.zfill(np.arange(items).astype(str), 6))
    judge = rng.integers(0, JUDGES, decisions)
    created = pd.Timestamp("2024-03-01T08:00:00Z") + pd.to_timedelta(
        np.sort(rng.integers(0, 6 * 3600, decisions)), unit="s"
    )
    frame = pd.DataFrame(
        {
            "id": np.char.add("d", np.arange(decisions).astype(str)),
            "timeTaken": rng.integers(5_000, 120_000, decisions),
            "createdAt": created.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "judgeId": np.char.add("j", judge.astype(str)),
            "judge": np.char.add(np.char.add("j", judge.astype(str)), "@school.example"),
            "chosen": np.where(left_wins, ids[left], ids[right]),
            "notChosen": np.where(left_wins, ids[right], ids[left]),
            "isLeft": np.where(left_wins, "true", "false"),
            "exclude": "false",
            "task": "national-2024",
        }
    )
    frame.to_csv(path, index=False)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_backend(url: str, export: Path) -> dict:
    """Import ``export`` into the migrated database at ``url``; timings and peak memory."""
    from cjlib.db import get_engine, upgrade
    from cjlib.importing import read_judgement_file
    from cjlib.scoring import fit_bradley_terry
    from cjlib.workflow.imports import import_judgements

    engine = get_engine(url)
    upgrade(engine)
    start = time.perf_counter()
    decisions = read_judgement_file(export)
    read = time.perf_counter() - start
    result = import_judgements(
        engine,
        decisions,
        assignment_id="bench-import",
        course_id="BENCH",
        batch_label=f"import-{len(decisions.decisions)}",
    )
    total = time.perf_counter() - start
    peak = _peak_mib()
    fit_start = time.perf_counter()
    fit = fit_bradley_terry(decisions.decisions, alpha=result.finalization.bt_alpha or 0.0)
    fit_alone = time.perf_counter() - fit_start
    engine.dispose()
    return {
        "read": read,
        **result.seconds,
        "total": total,
        "peak_mib": peak,
        "fit_alone": fit_alone,
        "fit_engine": fit.engine,
        "status": result.finalization.status,
        "comparisons": result.comparisons,
        "essays": result.essays,
    }


def _postgres_url() -> tuple[str, object]:
    from sqlalchemy import create_engine, text

    server = os.environ.get("CJ_TEST_DATABASE_URL", "").strip() or DEFAULT_SERVER_URL
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"cj_bench_import_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    from sqlalchemy import make_url

    return make_url(server).set(database=name).render_as_string(hide_password=False), drop


def _child(backend: str, export: Path, folder: Path) -> dict:
    drop = None
    if backend == "postgresql":
        url, drop = _postgres_url()
    else:
        url = f"sqlite:///{folder / 'bench.sqlite3'}"
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", url, str(export)],
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        if drop is not None:
            drop()
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--child", nargs=2, metavar=("URL", "EXPORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_backend(args.child[0], Path(args.child[1]))))
        return 0
    with tempfile.TemporaryDirectory(prefix="cj_import_bench_") as tmp:
        folder = Path(tmp)
        export = folder / "nmm_decisions.csv"
        start = time.perf_counter()
        generate_export(export, args.decisions, args.items)
        size = export.stat().st_size / 2**20
        print(
            f"export: {args.decisions:,} decisions over {args.items:,} items, {size:.0f} MiB "
            f"(generated in {time.perf_counter() - start:.1f} s); cores {os.cpu_count()}, "
            f"load average before {os.getloadavg()[0]:.1f}"
        )
        header = (
            f"{'backend':<11} {'read':>6} {'valid.':>6} {'write':>6} {'final.':>7} "
            f"{'total':>7} {'peak MiB':>9} {'fit alone':>9}  status"
        )
        print(header)
        print("-" * len(header))
        for backend in args.backends:
            r = _child(backend, export, folder)
            verdict = ""
            if backend == "postgresql":
                verdict = "  ≤ 60 s" if r["total"] <= TARGET_SECONDS else "  > 60 s target"
            print(
                f"{backend:<11} {r['read']:6.1f} {r['validate']:6.1f} {r['write']:6.1f} "
                f"{r['finalize']:7.1f} {r['total']:7.1f} {r['peak_mib']:9.0f} "
                f"{r['fit_alone']:9.1f}  {r['status']}{verdict}"
            )
        print(f"load average after {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
