"""Regenerate the synthetic ENG5 data set shipped in ``cjlib/sample_data/eng5_np_2016``."""

from __future__ import annotations

import argparse
from pathlib import Path

from cjlib.datasets import generate_eng5_dataset
from cjlib.package_data import sample_dataset_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: the package's copy, for an editable install)",
    )
    parser.add_argument("--seed", type=int, default=2016)
    parser.add_argument("--n-students", type=int, default=120)
    args = parser.parse_args()
    out_dir = args.out if args.out is not None else sample_dataset_dir()
    out = generate_eng5_dataset(out_dir, seed=args.seed, n_students=args.n_students)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
