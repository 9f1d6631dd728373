"""Accuracy of `cvedge train` against a plain scikit-learn logistic regression on the SAME backbone
features, with the same cross-validated evaluation numbers, on a data set that ships inside a
registry package (scikit-learn's bundled `load_digits`: no download at run time).

What it does
------------
* Data: the 1797 8x8 digit images of `sklearn.datasets.load_digits` (10 classes, 174-183 each),
  drawn as dark ink on white (255 - v*255/16), upscaled to 96x96 with Pillow's bicubic filter,
  RGB, written as PNG to DATA/d<digit>/<index>.png (tags d0..d9; cvedge orders new tags
  alphabetically, which is numeric order here).  Every image is distinct (no duplicate bytes).
* Features: `cvedge features --model models/demo --data DATA --iterations ITERS --out F.npy` on a
  fresh ITERS: the exact float32 backbone features (EfficientNet-Lite0, 1280 wide) cvedge trains
  on, one row per image in the data set's sha1 order (F.json names each row's tags).  Its wall
  time is the backbone pass for all images (decode + preprocess + backbone, both cores); it also
  fills ITERS/.cache, so every `cvedge train` below reads cached features.
* cvedge: `cvedge train --model models/demo --data DATA --iterations ITERS --folds 5
  --threshold 0.5 --json` (default head options: --l2 0.01, --augment 0, --seed 0), the numbers
  from its JSON (precision, recall, mAP as mean +- population std over the 5 stratified folds) and
  its pooled confusion matrix (accuracy at the threshold = diagonal / images).  The same command at
  --threshold 0 gives top-1 accuracy (the fits do not depend on the threshold, so the heads are
  the same: at threshold 0 pooled recall = the fraction of images whose top tag is right).
  Sweep: --l2 0.0001, 0.001, 0.01 (default), 0.1, 1; and --augment 2 at the default l2 (two
  augmented variants per image: flip, flip + jittered crop; their features are computed then).
  Wall time of each command (features cached) and iteration.json's training_seconds.
* scikit-learn on the same F.npy: Pipeline(StandardScaler(), LogisticRegression(lbfgs, C=1,
  max_iter=10000)) under StratifiedKFold(5, shuffle=True, random_state=SEED), the same numbers
  with the same definitions (implemented in `fold_metrics` below, from the module doc of
  src/train/metrics.rs, and checked against that file's hand-worked examples before the run):
  multiclass prediction = the top tag (lowest index on a tie) if its probability >= threshold;
  per-tag TP/FP/FN; precision and recall micro-pooled over tags in each fold (0/0 = 0); AP per
  tag = sklearn average_precision_score on that tag's probability column (0 if the fold has no
  positive, which stratified folds avoid), mAP = mean over tags with positives; then mean and
  population std (ddof=0) over folds.  Plus the final fit on every image, timed with the CV.
  Also run at C = 1 / (l2 * n_train) for cvedge's default l2 = 0.01: the same penalty as cvedge's
  objective (mean loss + l2/2 |W|^2 on standardised features is sklearn's 1/2 |W|^2 + C * sum of
  losses with C = 1 / (l2 * n)), so a difference from cvedge there comes from the optimiser
  (L-BFGS with early stopping on a held-out tenth) rather than from the penalty.
  The folds are not the same images as cvedge's (another shuffle); both are stratified 5-fold.

Reproduce (from the repo root, after `cargo build --release`; needs scikit-learn, see
scripts/requirements.txt):

    python3 scripts/train_accuracy.py --out docs/training.md

Options: --binary, --model, --seed, --work DIR (keep the data, features and iterations there
instead of a temp dir), --out FILE (replace the generated block of that markdown file between
its `<!-- train_accuracy.py: begin -->` / `end` markers, or write the file if it has none).
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np
from PIL import Image

import sklearn
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchdoc  # noqa: E402  (run_timed())

REPO = benchdoc.REPO
CMD = "python3 scripts/train_accuracy.py --out docs/training.md"
BEGIN = "<!-- train_accuracy.py: begin (generated, replaced on every run) -->"
END = "<!-- train_accuracy.py: end -->"
L2_SWEEP = (0.0001, 0.001, 0.01, 0.1, 1.0)
DEFAULT_L2 = 0.01


# --------------------------------------------------------------------------------------
# data


def make_digits(data_dir, size):
    """Writes load_digits as size x size RGB PNGs under data_dir/d<digit>/; returns the count."""
    digits = load_digits()
    for i, (img, target) in enumerate(zip(digits.images, digits.target)):
        grey = (255 - np.round(img * 255.0 / 16.0)).clip(0, 255).astype(np.uint8)
        im = Image.fromarray(grey, "L").resize((size, size), Image.BICUBIC).convert("RGB")
        folder = os.path.join(data_dir, "d%d" % target)
        os.makedirs(folder, exist_ok=True)
        im.save(os.path.join(folder, "%04d.png" % i), "PNG")
    return len(digits.images)


# --------------------------------------------------------------------------------------
# the evaluation rules of src/train/metrics.rs, in numpy


def fold_metrics(truth, probs, threshold):
    """One fold, multiclass: truth[i] = tag index, probs[i] = probabilities in tag order.
    Returns (per-tag list of dicts, pooled precision, pooled recall, mAP, confusion matrix)."""
    truth = np.asarray(truth)
    probs = np.asarray(probs, dtype=np.float64)
    n, k = probs.shape
    top = np.argmax(probs, axis=1)  # first maximum: the lowest index on a tie
    pred = np.where(probs[np.arange(n), top] >= threshold, top, -1)
    per_tag, tp_all, fp_all, fn_all, aps = [], 0, 0, 0, []
    ratio = lambda a, b: a / b if b else 0.0
    for t in range(k):
        tp = int(np.sum((pred == t) & (truth == t)))
        fp = int(np.sum((pred == t) & (truth != t)))
        fn = int(np.sum((truth == t) & (pred != t)))
        positives = int(np.sum(truth == t))
        ap = float(average_precision_score(truth == t, probs[:, t])) if positives else 0.0
        if positives:
            aps.append(ap)
        per_tag.append({"tp": tp, "fp": fp, "fn": fn, "precision": ratio(tp, tp + fp),
                        "recall": ratio(tp, tp + fn), "ap": ap})
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
    confusion = np.zeros((k, k + 1), dtype=int)
    for t, p in zip(truth, pred):
        confusion[t, p if p >= 0 else k] += 1
    return per_tag, ratio(tp_all, tp_all + fp_all), ratio(tp_all, tp_all + fn_all), \
        (float(np.mean(aps)) if aps else 0.0), confusion


def summarize(folds):
    """Mean and population std over folds, in the portal's names (as `cvedge train --json`)."""
    pooled = lambda i: np.array([f[i] for f in folds])
    k = len(folds[0][0])
    return {
        "precision": float(pooled(1).mean()), "precisionStdDeviation": float(pooled(1).std()),
        "recall": float(pooled(2).mean()), "recallStdDeviation": float(pooled(2).std()),
        "averagePrecision": float(pooled(3).mean()),
        "perTagPerformance": [{
            "precision": float(np.mean([f[0][t]["precision"] for f in folds])),
            "recall": float(np.mean([f[0][t]["recall"] for f in folds])),
            "averagePrecision": float(np.mean([f[0][t]["ap"] for f in folds])),
        } for t in range(k)],
        "confusion": sum(f[4] for f in folds).tolist(),
    }


def self_test():
    """The hand-worked multiclass example of src/train/metrics.rs's tests (threshold 0.6)."""
    probs = [[0.9, 0.1], [0.8, 0.2], [0.35, 0.65], [0.38, 0.62], [0.55, 0.45], [0.4, 0.6]]
    truth = [0, 1, 0, 1, 0, 1]
    per_tag, p, r, m, conf = fold_metrics(truth, np.array(probs, dtype=np.float32), 0.6)
    close = lambda a, b: abs(a - b) < 1e-9
    assert [(t["tp"], t["fp"], t["fn"]) for t in per_tag] == [(1, 1, 2), (2, 1, 1)], per_tag
    assert close(per_tag[0]["ap"], 13 / 18) and close(per_tag[1]["ap"], 53 / 90), per_tag
    assert close(p, 3 / 5) and close(r, 3 / 6) and close(m, 59 / 90), (p, r, m)
    assert conf.tolist() == [[1, 1, 1], [1, 2, 0]], conf
    # Ties are one step of the ranking (the input order does not matter).
    assert close(fold_metrics([0, 1, 0], [[0.5, 0.5], [0.5, 0.5], [0.2, 0.8]], 0.5)[0][0]["ap"], 7 / 12)
    # A probability equal to the threshold is predicted.
    assert fold_metrics([1], [[0.25, 0.75]], 0.75)[0][1]["tp"] == 1


# --------------------------------------------------------------------------------------
# cvedge


run = benchdoc.run_timed


def cvedge_train(args, data, iters, threshold=0.5, l2=None, augment=None):
    cmd = [args.binary, "train", "--model", args.model, "--data", data, "--iterations", iters,
           "--folds", "5", "--threshold", str(threshold), "--seed", str(args.seed), "--json"]
    if l2 is not None:
        cmd += ["--l2", str(l2)]
    if augment is not None:
        cmd += ["--augment", str(augment)]
    label = "cvedge train (l2 %s, augment %s, threshold %s)" % (l2, augment, threshold)
    print(label + " ...", file=sys.stderr)
    r, wall = run(cmd, label)
    report = json.loads(r.stdout.strip().splitlines()[-1])
    with open(os.path.join(report["iteration"], "iteration.json")) as f:
        record = json.load(f)
    report["_wall"] = wall
    report["_training"] = record.get("training", {})
    return report


def accuracy(confusion):
    c = np.asarray(confusion)
    return float(np.trace(c[:, :c.shape[0]]) / c.sum())


# --------------------------------------------------------------------------------------
# scikit-learn


def sklearn_cv(X, y, seed, threshold, C=None, per_fold_c=None):
    """5-fold stratified CV + final fit; returns (summary at threshold, summary at 0, seconds,
    lbfgs iterations of the final fit)."""
    skf = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    t0 = time.perf_counter()
    probs_by_fold = []
    for train, val in skf.split(X, y):
        c = per_fold_c(len(train)) if per_fold_c else C
        model = Pipeline([("scale", StandardScaler()),
                          ("lr", LogisticRegression(C=c, max_iter=10000))])
        model.fit(X[train], y[train])
        probs_by_fold.append((y[val], model.predict_proba(X[val])))
    c = per_fold_c(len(y)) if per_fold_c else C
    final = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression(C=c, max_iter=10000))])
    final.fit(X, y)
    seconds = time.perf_counter() - t0
    at = summarize([fold_metrics(t, p, threshold) for t, p in probs_by_fold])
    at0 = summarize([fold_metrics(t, p, 0.0) for t, p in probs_by_fold])
    return at, at0, seconds, int(np.max(final.named_steps["lr"].n_iter_))


# --------------------------------------------------------------------------------------
# report


def pct(x):
    return "%.1f%%" % (100 * x)


def pm(mean, sd):
    return "%.1f%% ± %.1f" % (100 * mean, 100 * sd)


def versions(binary):
    return "%s, binary built %s, HEAD %s; python %s, scikit-learn %s, numpy %s, pillow %s; `nproc` = %s" % (
        benchdoc.sh([binary, "--version"]), benchdoc.built(binary), benchdoc.head(),
        platform.python_version(), sklearn.__version__, np.__version__, Image.__version__, benchdoc.sh(["nproc"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=os.path.join(REPO, "target", "release", "cvedge"))
    ap.add_argument("--model", default="models/demo")
    ap.add_argument("--seed", type=int, default=0, help="cvedge --seed and the StratifiedKFold seed")
    ap.add_argument("--size", type=int, default=96, help="side of the written PNGs (default 96)")
    ap.add_argument("--work", help="keep data, features and iterations in this folder (fresh each run)")
    ap.add_argument("--out", help="write the results into this markdown file (e.g. docs/training.md)")
    args = ap.parse_args()
    if not os.path.exists(args.binary):
        raise SystemExit("FATAL: %s not found: run `cargo build --release` first" % args.binary)
    self_test()
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()

    tmp = None
    if args.work:
        work = os.path.abspath(args.work)
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="cvedge-train-accuracy-")
        work = tmp.name
    data, iters, feats = (os.path.join(work, x) for x in ("data", "iterations", "features.npy"))

    n_images = make_digits(data, args.size)
    print("%d digit images (%dx%d PNG) in %s" % (n_images, args.size, args.size, data), file=sys.stderr)

    print("cvedge features (fresh cache) ...", file=sys.stderr)
    _, features_wall = run([args.binary, "features", "--model", args.model, "--data", data,
                            "--iterations", iters, "--out", feats], "cvedge features")
    X = np.load(feats)
    with open(os.path.splitext(feats)[0] + ".json") as f:
        rows = json.load(f)
    assert X.shape[0] == len(rows) == n_images, (X.shape, len(rows))

    base = cvedge_train(args, data, iters)
    tags = base["tags"]
    y = np.array([tags.index(r["tags"][0]) for r in rows])
    top1 = cvedge_train(args, data, iters, threshold=0.0)
    sweep = {}
    for l2 in L2_SWEEP:
        sweep[l2] = base if l2 == DEFAULT_L2 else cvedge_train(args, data, iters, l2=l2)
    aug = cvedge_train(args, data, iters, augment=2)

    print("scikit-learn, C = 1 ...", file=sys.stderr)
    sk, sk0, sk_seconds, sk_iter = sklearn_cv(X, y, args.seed, 0.5, C=1.0)
    print("scikit-learn, C = 1 / (0.01 n) ...", file=sys.stderr)
    skm, skm0, skm_seconds, skm_iter = sklearn_cv(X, y, args.seed, 0.5,
                                                   per_fold_c=lambda n: 1.0 / (DEFAULT_L2 * n))
    load_after = os.getloadavg()

    # ---- tables
    def row(name, r, r0, wall, fit_s, note=""):
        return "| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, pm(r["precision"], r["precisionStdDeviation"]), pm(r["recall"], r["recallStdDeviation"]),
            pct(r["averagePrecision"]), pct(accuracy(r["confusion"])),
            pct(r0["recall"]) if r0 is not None else "", wall, note or fit_s)

    main_table = [
        "| learner (same %d features, 5-fold stratified CV) | precision ± sd | recall ± sd | mAP | accuracy at 0.5 | top-1 accuracy | time | |" % n_images,
        "|---|--:|--:|--:|--:|--:|--:|---|",
        row("**cvedge train** (defaults: l2 0.01, augment 0)", base, top1,
            "%.1f s (training %.1f s)" % (base["_wall"], base["_training"].get("training_seconds", float("nan"))), "",
            "L-BFGS, early stopping on a held-out tenth"),
        row("**scikit-learn** LogisticRegression C=1 (lbfgs, StandardScaler)", sk, sk0,
            "%.1f s" % sk_seconds, "", "lbfgs converged in %d iterations (final fit)" % sk_iter),
        row("scikit-learn, C = 1/(0.01 n): cvedge's default penalty", skm, skm0,
            "%.1f s" % skm_seconds, "", "lbfgs %d iterations (final fit)" % skm_iter),
    ]
    sweep_table = [
        "| cvedge setting | precision ± sd | recall ± sd | mAP | accuracy at 0.5 | wall time | training_seconds | final fit epochs (max 400) | sklearn C with the same penalty (n = %d) |" % round(n_images * 0.8),
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for l2, r in sweep.items():
        sweep_table.append("| --l2 %g%s | %s | %s | %s | %s | %.1f s | %.1f s | %s | %.3g |" % (
            l2, " (default)" if l2 == DEFAULT_L2 else "", pm(r["precision"], r["precisionStdDeviation"]),
            pm(r["recall"], r["recallStdDeviation"]), pct(r["averagePrecision"]), pct(accuracy(r["confusion"])),
            r["_wall"], r["_training"].get("training_seconds", float("nan")), r["_training"].get("epochs", "?"),
            1 / (l2 * round(n_images * 0.8))))
    sweep_table.append("| --l2 0.01 --augment 2 (%d backbone passes computed) | %s | %s | %s | %s | %.1f s | %.1f s (features %.1f s) | %s | |" % (
        aug["_training"].get("computed_features", -1), pm(aug["precision"], aug["precisionStdDeviation"]),
        pm(aug["recall"], aug["recallStdDeviation"]), pct(aug["averagePrecision"]), pct(accuracy(aug["confusion"])),
        aug["_wall"], aug["_training"].get("training_seconds", float("nan")),
        aug["_training"].get("feature_seconds", float("nan")), aug["_training"].get("epochs", "?")))

    per_tag = ["| tag | cvedge precision | sklearn precision | cvedge recall | sklearn recall | cvedge AP | sklearn AP |",
               "|---|--:|--:|--:|--:|--:|--:|"]
    for t, (a, b) in enumerate(zip(base["perTagPerformance"], sk["perTagPerformance"])):
        per_tag.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            tags[t], pct(a["precision"]), pct(b["precision"]), pct(a["recall"]), pct(b["recall"]),
            pct(a["averagePrecision"]), pct(b["averagePrecision"])))

    def confusion_md(c):
        lines = ["| tagged \\ predicted | " + " | ".join(tags) + " | below 0.5 |",
                 "|---|" + "--:|" * (len(tags) + 1)]
        for t, r in zip(tags, c):
            lines.append("| %s | %s |" % (t, " | ".join(str(v) for v in r)))
        return "\n".join(lines)

    timing = (
        "Time in this run (wall, seconds; 2-core shared VM, so compare within the run): backbone features "
        "for the %d images (`cvedge features`, fresh cache) %.1f s; each `cvedge train` below reads "
        "them from the cache. cvedge's times are the whole command (process start, model load, "
        "reading %d cached feature files, 5 fold fits + the final fit on 2 threads, saving the "
        "iteration); `training_seconds` is iteration.json's fit + evaluation part. scikit-learn's is "
        "the 5 fold fits + the final fit in this process (numpy/BLAS on both cores), features already "
        "in memory. cvedge defaults: %.1f s wall, scikit-learn C=1: %.1f s; ratio cvedge / scikit-learn "
        "%.2fx (wall) and %.2fx (training_seconds only)." % (
            n_images, features_wall, n_images, base["_wall"], sk_seconds,
            base["_wall"] / sk_seconds, base["_training"].get("training_seconds", float("nan")) / sk_seconds))

    generated = "\n\n".join([
        BEGIN,
        "Results of the last run (%s UTC, seed %d):" % (started.strftime("%Y-%m-%d %H:%M"), args.seed),
        "\n".join(main_table),
        "Precision, recall and their ± are mean and population standard deviation over the 5 folds "
        "at threshold 0.5 (percentage points); mAP is the mean over folds of the mean AP over tags; "
        "accuracy at 0.5 is the pooled confusion matrix's diagonal over all images (top tag right "
        "and >= 0.5); top-1 accuracy is the same at threshold 0 (top tag right), from a second "
        "`cvedge train --threshold 0` (same folds, same heads) and from the same scikit-learn folds.",
        timing,
        "**Sweep** (cvedge, same cached features, each a separate `cvedge train --folds 5 --json`):",
        "\n".join(sweep_table),
        "Per tag, cvedge defaults vs scikit-learn C=1:",
        "\n".join(per_tag),
        "Pooled confusion matrices over the 5 folds (rows: tagged, columns: predicted at 0.5):\n\n"
        "cvedge (defaults):\n\n" + confusion_md(base["confusion"]) + "\n\nscikit-learn C=1:\n\n" + confusion_md(sk["confusion"]),
        "Versions: " + versions(args.binary) + "; load average (1/5/15 min) at start %.2f/%.2f/%.2f, at end %.2f/%.2f/%.2f." % (load_before + load_after),
        END,
    ])
    print(generated)
    if args.out:
        out = os.path.join(REPO, args.out) if not os.path.isabs(args.out) else args.out
        old = open(out, encoding="utf-8").read() if os.path.exists(out) else ""
        if BEGIN in old and END in old:
            text = old[:old.index(BEGIN)] + generated + old[old.index(END) + len(END):]
        else:
            text = "# Training accuracy: cvedge vs scikit-learn\n\nReproduce: `%s`\n\n%s\n" % (CMD, generated)
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
        print("wrote %s" % os.path.relpath(out, REPO), file=sys.stderr)
    json.dump({"cvedge": {k: v for k, v in base.items() if not k.startswith("_")},
               "sklearn": sk, "features_wall": features_wall}, open(os.path.join(work, "summary.json"), "w"), indent=1)
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
