"""Regenerate the committed synthetic ENG5 data set in ``data/eng5_np_2016``."""

from __future__ import annotations

import argparse
from pathlib import Path

from cjlib.datasets import ENG5_DATASET_DIR, generate_eng5_dataset

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / ENG5_DATASET_DIR)
    parser.add_argument("--seed", type=int, default=2016)
    parser.add_argument("--n-students", type=int, default=120)
    args = parser.parse_args()
    out = generate_eng5_dataset(args.out, seed=args.seed, n_students=args.n_students)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
