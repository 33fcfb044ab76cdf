"""Wall time and peak memory of importing a No More Marking-shaped export, per database.

Generates an NMM decisions export (``id, timeTaken, createdAt, judgeId, judge, chosen,
notChosen, isLeft, exclude, task``; times in ms) of ``--decisions`` decisions over
``--items`` items — a balanced random design (every item in the same number of rounds of
random pairings) with Bradley–Terry outcomes from abilities N(0, 1), 200 judges — and
imports it as ``cj judgements import`` does: read (:func:`cjlib.importing.read_judgement_file`),
validate and write in one transaction (bulk COPY on PostgreSQL, executemany on SQLite), then
finalize (BT fit, scores, events, COMPLETE_STABLE). Printed per phase: wall seconds, and the
benchmark process's CPU seconds (the database server's CPU is not in them). The finalizer's
own steps are shown too (``read_decisions``, ``fit``, ``split_half``, ``store_scores``, …), and
the BT fit alone (the finalizer's call on the stored decisions, timed by itself), so the fit's
share is known.

``--anchors N`` marks N items as anchors (grades from their true ability's quantiles on the
default scale), so the finalizer projects grades for the other items and stores them.
``--artefacts`` then writes the run artefacts of the imported batch and times them
(:func:`cjlib.workflow.artefacts.write_execute_artefacts`: request envelope,
``grade_projections.csv``, execute record; not part of ``cj judgements import``).

Each backend runs in its own subprocess so that its peak resident memory (``ru_maxrss``) is
its own. The PostgreSQL database is created fresh on ``CJ_TEST_DATABASE_URL``'s server and
dropped afterwards. Target (issue 12): 1,000,000 decisions over 50,000 items in ≤ 60 s on
PostgreSQL.

    python benchmarks/import_speed.py                                # 1,000,000 / 50,000
    python benchmarks/import_speed.py --decisions 100000 --items 5000
    python benchmarks/import_speed.py --backends postgresql
    python benchmarks/import_speed.py --backends postgresql --anchors 500
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


def generate_export(
    path: Path, decisions: int, items: int, seed: int = 12, anchors_path: Path | None = None,
    anchors: int = 0,
) -> None:  # fmt: skip
    """Write an NMM-shaped decisions export of ``decisions`` rows over ``items`` items.

    With ``anchors`` > 0, also ``anchors_path``: ``essay_id, grade`` of that many items spread
    over the ability range, graded by their ability's quantile on the default scale.
    """
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
    if anchors:
        from cjlib.defaults import DEFAULT_GRADE_SCALE
        from cjlib.grades import get_grade_scale

        grades = np.asarray(get_grade_scale(DEFAULT_GRADE_SCALE).grades)
        chosen = np.argsort(theta)[np.linspace(0, items - 1, anchors).astype(int)]
        quantile = np.argsort(np.argsort(theta))[chosen] / items
        pd.DataFrame(
            {"essay_id": ids[chosen], "grade": grades[(quantile * len(grades)).astype(int)]}
        ).to_csv(anchors_path, index=False)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_backend(url: str, export: Path, anchors: Path | None, run_dir: Path | None) -> dict:
    """Import ``export`` into the migrated database at ``url``; timings and peak memory."""
    from cjlib.db import get_engine, session_scope, upgrade
    from cjlib.db.queries import decided_comparisons
    from cjlib.importing import read_judgement_file
    from cjlib.scoring import fit_bradley_terry
    from cjlib.workflow.artefacts import write_execute_artefacts
    from cjlib.workflow.imports import import_judgements

    engine = get_engine(url)
    upgrade(engine)
    start, cpu_start = time.perf_counter(), time.process_time()
    decisions = read_judgement_file(export)
    read = time.perf_counter() - start
    result = import_judgements(
        engine,
        decisions,
        assignment_id="bench-import",
        course_id="BENCH",
        batch_label=f"import-{len(decisions.decisions)}",
        anchors=anchors,
    )
    total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak = _peak_mib()
    fit = result.finalization
    # The finalizer's own fit call, on the frame it fits (the stored decisions), by itself.
    with session_scope(engine) as session:
        stored = decided_comparisons(session, result.cj_batch_id)
    fit_start, fit_cpu = time.perf_counter(), time.process_time()
    alone = fit_bradley_terry(stored, method=fit.bt_method, alpha=fit.bt_alpha)
    fit_alone, fit_alone_cpu = time.perf_counter() - fit_start, time.process_time() - fit_cpu
    artefacts = None
    if run_dir is not None:
        artefacts_start = time.perf_counter()
        write_execute_artefacts(engine, result.cj_batch_id, run_dir)
        artefacts = time.perf_counter() - artefacts_start
    engine.dispose()
    return {
        "read": read,
        **result.seconds,
        "total": total,
        "cpu": cpu,
        "peak_mib": peak,
        "steps": dict(fit.step_seconds),
        "fit_alone": fit_alone,
        "fit_alone_cpu": fit_alone_cpu,
        "fit_engine": alone.engine,
        "artefacts": artefacts,
        "projections": fit.projection_count,
        "status": fit.status,
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


def _child(backend: str, export: Path, anchors: Path | None, folder: Path, artefacts: bool) -> dict:
    drop = None
    if backend == "postgresql":
        url, drop = _postgres_url()
    else:
        url = f"sqlite:///{folder / 'bench.sqlite3'}"
    try:
        flag = "artefacts" if artefacts else ""
        out = subprocess.run(
            [sys.executable, __file__, "--child", url, str(export), str(anchors or ""), flag],
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        if drop is not None:
            drop()
    return json.loads(out.stdout.strip().splitlines()[-1])


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--anchors", type=int, default=0, help="items marked as anchors")
    parser.add_argument("--artefacts", action="store_true", help="also time the artefacts")
    parser.add_argument("--child", nargs=4, metavar=("URL", "EXPORT", "ANCHORS", "ARTEFACTS"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args(argv)
    if args.child:
        url, export, anchors, artefacts = args.child
        with tempfile.TemporaryDirectory(prefix="cj_import_bench_run_") as run_dir:
            result = run_backend(url, Path(export), Path(anchors) if anchors else None,
                                 Path(run_dir) if artefacts else None)  # fmt: skip
        print(json.dumps(result))
        return 0
    with tempfile.TemporaryDirectory(prefix="cj_import_bench_") as tmp:
        folder = Path(tmp)
        export = folder / "nmm_decisions.csv"
        anchors = folder / "anchors.csv" if args.anchors else None
        start = time.perf_counter()
        generate_export(export, args.decisions, args.items, anchors_path=anchors,
                        anchors=args.anchors)  # fmt: skip
        size = export.stat().st_size / 2**20
        print(
            f"export: {args.decisions:,} decisions over {args.items:,} items, {args.anchors} "
            f"anchors, {size:.0f} MiB (generated in {time.perf_counter() - start:.1f} s); "
            f"cores {os.cpu_count()}"
        )
        header = (
            f"{'backend':<11} {'read':>6} {'valid.':>6} {'write':>6} {'final.':>7} "
            f"{'total':>7} {'CPU':>6} {'peak MiB':>9} {'fit alone':>9} {'artef.':>7}  load avg"
        )
        print(header)
        print("-" * len(header))
        for backend in args.backends:
            load_before = os.getloadavg()[0]
            r = _child(backend, export, anchors, folder, args.artefacts)
            verdict = ""
            if backend == "postgresql":
                verdict = "≤ 60 s" if r["total"] <= TARGET_SECONDS else "> 60 s target"
            print(
                f"{backend:<11} {r['read']:6.1f} {r['validate']:6.1f} {r['write']:6.1f} "
                f"{r['finalize']:7.1f} {r['total']:7.1f} {r['cpu']:6.1f} {r['peak_mib']:9.0f} "
                f"{r['fit_alone']:9.1f} {_seconds(r['artefacts']):>7}  "
                f"{load_before:.1f} → {os.getloadavg()[0]:.1f}"
            )
            steps = ", ".join(f"{k} {v:.1f}" for k, v in r["steps"].items())
            print(
                f"{'':<11} {r['status']}, {r['projections']} projections, {verdict}; finalizer "
                f"steps (s): {steps}; fit alone CPU {r['fit_alone_cpu']:.1f} s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
