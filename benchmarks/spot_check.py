"""Spot-check noise estimates: how often the 95 % interval holds the true noise rate.

For each true rate and verified-sample size: a 10-class training set of 20,000 labels with symmetric noise at
that rate, 1,000 seeded draws of ``sample_for_review`` (stratified, proportional), each verified against the
truth and estimated with ``spot_check_estimate``; reports the coverage of the Wilson interval, its mean width
and the mean absolute error of the rate.

    python benchmarks/spot_check.py
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import RESULTS, environment, save_json, split_list  # noqa: E402
from robust_paddle.data.noise import symmetric_matrix  # noqa: E402
from robust_paddle.quality.spot_check import sample_for_review, spot_check_estimate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", default="0.05,0.2,0.4")
    p.add_argument("--sizes", default="50,200,500")
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--out", default=os.path.join(RESULTS, "spot_check.json"))
    args = p.parse_args(argv)
    c, n = 10, 20_000
    rows = []
    print(f"{'rate':>6} {'verified':>9} {'coverage':>9} {'mean width':>11} {'MAE':>7}")
    for rate in (float(r) for r in split_list(args.rates)):
        rng = np.random.default_rng(0)
        true = rng.integers(0, c, size=n)
        cum = np.cumsum(symmetric_matrix(c, rate)[true], axis=1)
        given = (rng.uniform(size=(n, 1)) > cum).sum(axis=1)
        truth = float(np.mean(given != true))
        for m in (int(s) for s in split_list(args.sizes)):
            covered, widths, errors = 0, [], []
            for seed in range(args.draws):
                idx = sample_for_review(given, m, seed=seed, num_classes=c)
                est = spot_check_estimate(given[idx], true[idx], num_classes=c)
                lo, hi = est["interval"]
                covered += lo <= truth <= hi
                widths.append(hi - lo)
                errors.append(abs(est["noise_rate"] - truth))
            row = {"rate": rate, "true_rate": truth, "verified": m, "draws": args.draws,
                   "coverage": covered / args.draws, "mean_width": float(np.mean(widths)),
                   "mae": float(np.mean(errors))}
            rows.append(row)
            print(f"{rate:>6.2f} {m:>9d} {row['coverage']:>9.2f} {row['mean_width']:>11.3f} {row['mae']:>7.3f}")
    save_json(args.out, {"environment": environment(), "rows": rows, "args": vars(args)})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
