"""Wall time and peak memory of ``fit_bradley_terry`` per engine, against ``choix.ilsr_pairwise``.

Cases: ``default`` is ``fit_bradley_terry(comparisons)`` as a user calls it (the default
method, ``cjlib.scoring.DEFAULT_METHOD``, with its automatic engine and SE method);
``sparse`` and ``choix`` are the maximum-likelihood fit (``method="mle"``) with each engine;
``choix.ilsr_pairwise`` is choix alone.

The ratios are ``choix.ilsr_pairwise``'s time over the case's, by wall time and by process
CPU time (choix's dense linear algebra uses every core through BLAS; cjlib's fit holds BLAS
to one thread).

Each case runs in its own subprocess so that its peak resident memory (``ru_maxrss``) is its
own, after one untimed warm-up fit of 400 essays (first-call costs belong to the process).
The design is balanced: every essay meets a random opponent in 40 rounds of random
pairings, i.e. 20 · n decisions for n essays, with true abilities uniform on [−1, 1] so that
the win graph is strongly connected and the α = 0 estimate exists.

    python benchmarks/bt_scaling.py                   # 1,000 / 5,000 / 20,000 / 100,000 essays
    python benchmarks/bt_scaling.py --sizes 1000 5000
    python benchmarks/bt_scaling.py --quick           # 1,000 and 5,000, choix only at 1,000
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
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_SIZES = (1_000, 5_000, 20_000, 100_000)
QUICK_SIZES = (1_000, 5_000)
DECISIONS_PER_ESSAY = 20
CHOIX_MAX_ESSAYS = 5_000
QUICK_CHOIX_MAX_ESSAYS = 1_000
#: Essays in the untimed warm-up fit of every case.
WARM_UP_ESSAYS = 400
CASES = ("default", "sparse", "choix", "choix.ilsr_pairwise")


def simulate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Winner and loser indices of 20 · n decisions in a balanced random design."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(-1.0, 1.0, n)
    rounds = rng.permuted(np.tile(np.arange(n), (2 * DECISIONS_PER_ESSAY, 1)), axis=1)
    half = n // 2
    first = rounds[:, :half].ravel()
    second = rounds[:, half : 2 * half].ravel()
    first_wins = rng.random(first.size) < 1.0 / (1.0 + np.exp(theta[second] - theta[first]))
    return np.where(first_wins, first, second), np.where(first_wins, second, first)


def _rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_case(case: str, n: int, seed: int, theta_path: Path) -> dict:
    """Fit one case in this process; return its timings and write θ (sum zero) to disk."""
    winner, loser = simulate(n, seed)
    # One small fit first, untimed, for each case: first-call costs (lazy imports, BLAS
    # library discovery) belong to the process, not to the fit being measured.
    small_winner, small_loser = simulate(WARM_UP_ESSAYS, seed + 1)
    if case == "choix.ilsr_pairwise":
        import choix

        choix.ilsr_pairwise(WARM_UP_ESSAYS, list(zip(small_winner, small_loser, strict=True)))
    else:
        from cjlib.scoring import fit_bradley_terry

        small = pd.DataFrame({"winner_id": small_winner, "loser_id": small_loser})
        fit_bradley_terry(small, **({} if case == "default" else {"method": "mle", "engine": case}))
    baseline = _rss_kib()
    if case == "choix.ilsr_pairwise":
        data = list(zip(winner.tolist(), loser.tolist(), strict=True))
        start, cpu_start = time.perf_counter(), time.process_time()
        theta = choix.ilsr_pairwise(n, data)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        theta = theta - theta.mean()
        extra = {}
    else:
        comparisons = pd.DataFrame({"winner_id": winner, "loser_id": loser})
        start, cpu_start = time.perf_counter(), time.process_time()
        if case == "default":
            result = fit_bradley_terry(comparisons)
        else:
            result = fit_bradley_terry(comparisons, method="mle", engine=case)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        theta = result.scores["theta"].sort_index().to_numpy()
        extra = {
            "method": result.method,
            "iterations": result.iterations,
            "converged": result.converged,
            "se_method": result.se_method,
            "reliability": result.reliability,
        }
    np.save(theta_path, theta)
    return {
        "case": case,
        "n": n,
        "decisions": int(winner.size),
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_mib": _rss_kib() / 1024,
        "before_fit_mib": baseline / 1024,
        **extra,
    }


def _load() -> str:
    # Timings on a shared machine mean little without the load they were taken under.
    return ", ".join(f"{value:.1f}" for value in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def _spawn(case: str, n: int, seed: int, theta_path: Path) -> dict:
    command = [sys.executable, __file__, "--worker", case, str(n), str(seed), str(theta_path)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()  # empty when e.g. the OOM killer ended it
        return {"case": case, "n": n, "error": (lines or [f"exit {done.returncode}"])[-1]}
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", help="numbers of essays")
    parser.add_argument("--quick", action="store_true", help="1,000 and 5,000 essays")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        case, n, seed, theta_path = args.worker
        print(json.dumps(run_case(case, int(n), int(seed), Path(theta_path))))
        return 0

    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    choix_max = QUICK_CHOIX_MAX_ESSAYS if args.quick else CHOIX_MAX_ESSAYS
    header = (
        f"{'essays':>8} {'decisions':>10} {'case':<20} {'seconds':>9} {'cpu s':>8} {'peak MiB':>9} "
        f"{'ilsr / case':>11} {'by CPU':>8} {'max |Δθ| vs sparse':>19}"
    )
    print(f"load average before: {_load()}")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as folder:
        for n in sizes:
            rows, thetas = [], {}
            for case in CASES:
                if case not in ("sparse", "default") and n > choix_max:
                    print(
                        f"{n:>8,} {'':>10} {case:<20} skipped above {choix_max:,} essays "
                        "(dense n × n per iteration)"
                    )
                    continue
                theta_path = Path(folder) / f"{case}-{n}.npy"
                row = _spawn(case, n, args.seed, theta_path)
                if "error" in row:
                    print(f"{n:>8,} {'':>10} {case:<20} failed: {row['error']}")
                    continue
                thetas[case] = np.load(theta_path)
                rows.append(row)
            reference = next((r for r in rows if r["case"] == "choix.ilsr_pairwise"), None)
            for row in rows:
                ratio = f"{reference['seconds'] / row['seconds']:.1f}×" if reference else "—"
                cpu_ratio = (
                    f"{reference['cpu_seconds'] / row['cpu_seconds']:.1f}×" if reference else "—"
                )
                delta = (
                    f"{np.max(np.abs(thetas[row['case']] - thetas['sparse'])):.1e}"
                    if "sparse" in thetas
                    else "—"
                )
                note = f"  {row['before_fit_mib']:.0f} MiB before the fit"
                if "se_method" in row:
                    note += f"; {row['method']}, {row['se_method']} SEs"
                print(
                    f"{row['n']:>8,} {row['decisions']:>10,} {row['case']:<20} "
                    f"{row['seconds']:>9.3f} {row['cpu_seconds']:>8.2f} {row['peak_mib']:>9.0f} "
                    f"{ratio:>11} {cpu_ratio:>8} {delta:>19}"
                    f"{note}"
                )
    print(f"load average after: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
