"""``method_cost.py --against REF``: each method's epoch on an older commit and on this tree, side by side.

Issue 13 asks that no method's epoch got slower than in the table of 2026-11-22 (commit 30b5434c). A ratio to
standard CE cannot show it once CE itself got cheaper, and numbers from another day on a shared VM are not
comparable, so this times both versions in one run: ``REF`` is extracted with ``git archive`` into a temporary
folder (the repository is not touched), and every method is trained by a fresh subprocess of the same Python
in either tree, the two trees taking turns (old first in odd rounds, new first in even ones) on the same base
config (the same relative path inside each tree), overrides, noise, epochs and ``OMP_NUM_THREADS``. Each side
uses its own code end to end: its ``benchmarks/common.run_overrides`` (its shipped presets) and its
``benchmarks/method_cost.time_method``, with a trainer hook defined here that records wall-clock and CPU
seconds (``common.cpu_seconds``) per epoch; only ``robust_paddle.engine.hooks.Hook`` and those two
functions have to exist in ``REF`` (true from 30b5434c on). Method specs with ``:key=value`` parameters are
this tree's syntax and are refused.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = "@@method_cost_side@@"

#: run in a subprocess with cwd and PYTHONPATH = one tree; argv[1] = JSON arguments
SIDE_DRIVER = r'''
import argparse, json, logging, os, resource, sys, time
sys.path.insert(0, os.getcwd())
from benchmarks import common as C
from benchmarks import method_cost as M

def cpu_seconds():
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))

def epoch_timer():
    from robust_paddle.engine.hooks import Hook

    class EpochTimer(Hook):
        priority, name = 0, "epoch_timer"

        def __init__(self):
            self.rows = []

        def before_epoch(self, trainer):
            self._t0 = self._t1 = time.perf_counter()
            self._c0 = self._c1 = cpu_seconds()

        def after_step(self, trainer, terms):
            self._t1, self._c1 = time.perf_counter(), cpu_seconds()

        def after_epoch(self, trainer):
            self.rows.append({"epoch": trainer.epoch + 1, "train_s": self._t1 - self._t0,
                              "epoch_s": time.perf_counter() - self._t0, "train_cpu_s": self._c1 - self._c0,
                              "cpu_s": cpu_seconds() - self._c0})
    return EpochTimer()

a = json.loads(sys.argv[1])
logging.basicConfig(level=logging.WARNING)
C.epoch_timer = epoch_timer
base = C.load_base(argparse.Namespace(config=a["config"], override=a["override"], dataset=a["dataset"]))
r = M.time_method(base, a["spec"], noise=a["noise"], epochs=a["epochs"], workdir=a["workdir"],
                  dataset=base.data.name)
print("@@method_cost_side@@" + json.dumps({k: r[k] for k in ("warmup_epochs", "epochs")}, default=float))
'''


def checkout(ref: str, *, into: str) -> tuple[str, str]:
    """``(folder, commit)``: the tree of ``ref`` extracted into a new folder under ``into``.

    Raises:
        SystemExit: ``ref`` is not a commit of this repository, or git is missing (one line).
    """
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit(f"--against: {ref!r} is not a commit of the repository at {ROOT}") from None
    folder = os.path.join(into, f"tree-{commit[:10]}")
    os.makedirs(folder)
    archive = subprocess.Popen(["git", "-C", ROOT, "archive", "--format=tar", commit], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", folder], stdin=archive.stdout, check=True)
    archive.stdout.close()
    if archive.wait() != 0:
        raise SystemExit(f"--against: git archive {commit} failed")
    return folder, commit


def run_side(root: str, spec: str, *, config: str, override: list[str], dataset: str | None, noise: str,
             epochs: int, workdir: str) -> dict[str, Any]:
    """Train ``spec`` in the tree at ``root`` (a subprocess); per-epoch rows and the main-phase medians."""
    env = {**os.environ, "PYTHONPATH": root}
    args = {"config": config, "override": override, "dataset": dataset, "spec": spec, "noise": noise,
            "epochs": epochs, "workdir": workdir}
    proc = subprocess.run([sys.executable, "-c", SIDE_DRIVER, json.dumps(args)], cwd=root, env=env,
                          capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"{spec} in {root} failed (exit {proc.returncode}):\n{tail}")
    out = json.loads(lines[-1][len(MARKER):])
    main = [r for r in out["epochs"] if r["epoch"] > max(int(out["warmup_epochs"] or 0), 1)]
    for key in ("epoch_s", "cpu_s", "train_s", "train_cpu_s"):
        out[key] = statistics.median(r[key] for r in main)
    return out


def compare(ref: str, methods: list[str], *, config: str, override: list[str], dataset: str | None, noise: str,
            epochs: int, rounds: int, workdir: str) -> dict[str, Any]:
    """Time every method in both trees, alternating; returns the runs and one row per method."""
    bad = [m for m in methods if ":" in m]
    if bad:
        raise SystemExit(f"--against: method specs with parameters ({', '.join(bad)}) are this tree's syntax; "
                         "give plain method names")
    old_root, commit = checkout(ref, into=workdir)
    rel = os.path.relpath(os.path.abspath(config), ROOT)
    if rel.startswith(".."):
        raise SystemExit(f"--against: the base config must lie inside the repository (both trees read the same "
                         f"relative path), got {config}")
    if not os.path.isfile(os.path.join(old_root, rel)):
        raise SystemExit(f"--against: {rel} does not exist at {commit[:10]}")
    sides = {"old": old_root, "new": ROOT}
    runs: list[dict[str, Any]] = []
    failed: dict[str, str] = {}  # method -> the error of its first failed run (not timed again)
    for rnd in range(rounds):
        for m in methods:
            for side in (("old", "new") if rnd % 2 == 0 else ("new", "old")):
                if m in failed:
                    continue
                try:
                    r = run_side(sides[side], m, config=rel, override=override, dataset=dataset, noise=noise,
                                 epochs=epochs, workdir=os.path.join(workdir, f"{side}-r{rnd}"))
                except RuntimeError as e:
                    failed[m] = f"{side}: {e}"
                    print(f"[round {rnd + 1}/{rounds}] {m:<20} {side}: FAILED, left out\n{e}", flush=True)
                    continue
                runs.append({"method": m, "side": side, "round": rnd, **r})
                print(f"[round {rnd + 1}/{rounds}] {m:<20} {side}: epoch {r['epoch_s']:.3f} s wall, "
                      f"{r['cpu_s']:.3f} s CPU", flush=True)
    table = []
    for m in methods:
        if m in failed:
            continue
        row: dict[str, Any] = {"method": m}
        for side in sides:
            mine = [r for r in runs if r["method"] == m and r["side"] == side]
            for key in ("epoch_s", "cpu_s"):
                row[f"{side}_{key}"] = statistics.median(r[key] for r in mine)
        row["new_over_old"] = row["new_epoch_s"] / row["old_epoch_s"]
        row["new_over_old_cpu"] = row["new_cpu_s"] / row["old_cpu_s"]
        table.append(row)
    return {"ref": ref, "commit": commit, "runs": runs, "table": table, "failed": failed}


def print_table(result: dict[str, Any]) -> None:
    width = max(20, *(len(r["method"]) for r in result["table"]), 0)
    print(f"\nseconds per main-phase epoch (medians), {result['commit'][:10]} (old) against this tree (new)")
    print(f"{'method':<{width}} {'old s':>8} {'new s':>8} {'new/old':>8} {'old CPU s':>10} {'new CPU s':>10} "
          f"{'CPU new/old':>12}")
    for r in result["table"]:
        print(f"{r['method']:<{width}} {r['old_epoch_s']:>8.3f} {r['new_epoch_s']:>8.3f} {r['new_over_old']:>8.3f} "
              f"{r['old_cpu_s']:>10.3f} {r['new_cpu_s']:>10.3f} {r['new_over_old_cpu']:>12.3f}")
    print()
    for m, err in result["failed"].items():
        print(f"FAIL  {m}: not timed ({err.splitlines()[-1]})")
    for r in result["table"]:
        for key, what in (("new_over_old", "wall"), ("new_over_old_cpu", "CPU")):
            print(f"{'PASS' if r[key] <= 1.05 else 'FAIL'}  {r['method']}: epoch no slower than at "
                  f"{result['commit'][:10]} ({what} new/old {r[key]:.3f}, 5% allowed for timing noise)")


def default_workdir() -> str:
    return tempfile.mkdtemp(prefix="method_cost_against_")
