"""End-to-end throughput of a batch: comparisons per second and peak memory, per backend.

Each case runs ``execute_batch`` (as ``cj batch execute`` does: create the batch, judge the
waves with the simulated judge, finalize, write the artefacts) in its own subprocess on a fresh
database, so that its peak resident memory (``ru_maxrss``) is its own. The essays come from
:func:`cjlib.datasets.generate_eng5_dataset` in a temporary folder (12 anchors + students).

    python benchmarks/workflow_throughput.py                # the three cases of issue 13
    python benchmarks/workflow_throughput.py --quick        # 2,012 essays on both backends

The "report s" column times assembling the validation report and rendering its figures.
    python benchmarks/workflow_throughput.py --profile sqlite:2000:40000   # cProfile, top 40

Besides the end-to-end wall seconds, each row splits them into the waves (pairing, judging,
writing results: :class:`~cjlib.workflow.runner.BatchRunner`), the finalizer (fit, split-half,
projections) and the artefacts, and gives the process's CPU seconds over the run (the
PostgreSQL server's own CPU is not in it).

Targets (issue 13): ≥ 2,000 comparisons/s end to end on PostgreSQL at 40,000 comparisons,
peak memory ≤ 600 MB, and 400,000 comparisons over 20,000 essays in ≤ 5 minutes.
PostgreSQL cases create a throw-away database on ``CJ_TEST_DATABASE_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) and drop it afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

#: (backend, students, comparisons): 2,012 and 20,012 essays with the 12 anchors.
CASES = (
    ("sqlite", 2_000, 40_000),
    ("postgresql", 2_000, 40_000),
    ("postgresql", 20_000, 400_000),
)
QUICK_CASES = CASES[:2]
SERVER = os.environ.get("CJ_TEST_DATABASE_URL") or (
    "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _database(backend: str, folder: Path) -> tuple[str, object]:
    """A URL of an empty database, and a callable dropping it."""
    if backend == "sqlite":
        return f"sqlite:///{folder / 'bench.sqlite3'}", lambda: None
    from sqlalchemy import create_engine, make_url, text

    admin = create_engine(SERVER, isolation_level="AUTOCOMMIT")
    name = f"cj_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(SERVER).set(database=name).render_as_string(hide_password=False), drop


def _resident_mb() -> float | None:
    """This process's resident memory now (Linux ``/proc``), or None elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class _Phases:
    """Wall seconds and peak resident memory of the waves, finalizer and artefacts.

    Wraps the three calls ``execute_batch`` makes (as they are looked up in
    :mod:`cjlib.workflow.execute`) for the duration of the ``with`` block; a thread samples
    the resident memory every 0.1 s and books it to the phase running.
    """

    def __init__(self) -> None:
        self.seconds = {"waves": 0.0, "finalize": 0.0, "artefacts": 0.0}
        self.peak_mb = dict.fromkeys(self.seconds, 0.0)
        self._phase: str | None = None
        self._undo: list = []
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            phase, mb = self._phase, _resident_mb()
            if phase is not None and mb is not None:
                self.peak_mb[phase] = max(self.peak_mb[phase], mb)

    def _wrap(self, owner: object, name: str, phase: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            self._phase = phase
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - start

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def __enter__(self) -> _Phases:
        from cjlib.workflow import execute

        self._wrap(execute.BatchRunner, "run", "waves")
        self._wrap(execute.BatchFinalizer, "finalize_scoring", "finalize")
        self._wrap(execute, "_write_artefacts", "artefacts")
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sampler.join()
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_case(backend: str, students: int, comparisons: int, profile: bool = False) -> dict:
    """Run one case in this process; timings exclude data set generation and migration."""
    from cjlib.datasets import generate_eng5_dataset
    from cjlib.db import get_engine, upgrade
    from cjlib.workflow import execute_batch, register_anchors

    with tempfile.TemporaryDirectory(prefix="cj_bench_") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        dataset = generate_eng5_dataset(folder / "data", seed=13, n_students=students)
        generated = time.perf_counter() - t0
        url, drop = _database(backend, folder)
        try:
            engine = get_engine(url)
            upgrade(engine)
            register_anchors(engine, assignment_id="bench", course_id="ENG5", dataset=dataset)
            profiler = None
            if profile:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            cpu = _cpu_seconds()
            start = time.perf_counter()
            with _Phases() as phases:
                result = execute_batch(
                    engine, assignment_id="bench", course_id="ENG5", batch_label="throughput",
                    max_comparisons=comparisons, dataset=dataset, seed=1,
                    output_dir=folder / "runs",
                )  # fmt: skip
            seconds = time.perf_counter() - start
            cpu = _cpu_seconds() - cpu
            if profiler is not None:
                import pstats

                profiler.disable()
                pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
            report_seconds = _render_report(engine, result.cj_batch_id, dataset)
            engine.dispose()
        finally:
            drop()
    done = result.completed_comparisons + result.failed_comparisons
    return {
        "backend": backend,
        "essays": students + 12,
        "budget": comparisons,
        "comparisons": done,
        "waves": result.waves,
        "completion_reason": result.completion_reason,
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "per_second": round(done / seconds),
        **{f"{phase}_seconds": round(value, 1) for phase, value in phases.seconds.items()},
        **{f"{phase}_peak_mb": round(value) for phase, value in phases.peak_mb.items()},
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "dataset_seconds": round(generated, 1),
        "report_seconds": round(report_seconds, 1),
    }


def _render_report(engine, batch_id: int, dataset: Path) -> float:
    """Seconds to assemble the validation report and render every figure to PNG.

    Issue 13 asks for the report of a 2,000-essay batch in under a minute; this is the part
    that grows with the essays (the notebook's HTML export around it does not).
    """
    from io import BytesIO

    from cjlib.report import FIGURES, build_report

    start = time.perf_counter()
    rep = build_report(engine, batch_id, dataset_dir=dataset)
    for plot in FIGURES:
        plot(rep).savefig(BytesIO(), format="png", dpi=100)
    return time.perf_counter() - start


def _child(case: tuple[str, int, int]) -> dict:
    args = [sys.executable, __file__, "--child", ":".join(map(str, case))]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"backend": case[0], "essays": case[1] + 12, "budget": case[2],
                "error": done.stderr.strip().splitlines()[-1:]}  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def _parse(case: str) -> tuple[str, int, int]:
    backend, students, comparisons = case.split(":")
    return backend, int(students), int(comparisons)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,012 essays only")
    parser.add_argument("--cases", nargs="+", help="backend:students:comparisons …")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--profile", help="backend:students:comparisons, cProfile in-process")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(*_parse(args.child))))
        return
    if args.profile:
        print(json.dumps(run_case(*_parse(args.profile), profile=True)))
        return
    cases = (
        [_parse(c) for c in args.cases] if args.cases else (QUICK_CASES if args.quick else CASES)
    )
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
          f"on {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'backend':<11}{'essays':>8}{'compared':>10}{'seconds':>9}{'CPU s':>8}{'per s':>8}"
          f"{'waves s':>9}{'final s':>9}{'artef s':>9}{'peak MB':>9}{'report s':>10}"
          "  completion; peak MB in waves / finalizer / artefacts")  # fmt: skip
    for case in cases:
        row = _child(case)
        if "error" in row:
            print(f"{row['backend']:<11}{row['essays']:>8}  failed: {row['error']}")
            continue
        print(f"{row['backend']:<11}{row['essays']:>8}{row['comparisons']:>10}"
              f"{row['seconds']:>9}{row['cpu_seconds']:>8}{row['per_second']:>8}"
              f"{row['waves_seconds']:>9}{row['finalize_seconds']:>9}"
              f"{row['artefacts_seconds']:>9}{row['peak_mb']:>9}{row['report_seconds']:>10}  "
              f"{row['completion_reason']} ({row['waves']} waves); "
              f"{row['waves_peak_mb']} / {row['finalize_peak_mb']} / "
              f"{row['artefacts_peak_mb']}", flush=True)  # fmt: skip
    load = os.getloadavg()
    print(f"load at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
