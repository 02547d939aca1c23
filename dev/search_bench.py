"""Measures retroprop.GridSearchCV beside the peers (docs/performance.md).

    python dev/search_bench.py [--sets digits,synthetic] [--device cpu]
            [--fitters sklearn,sk-retroprop,sk-retroprop-jobs,retroprop]
            [--rounds 1] [--cv 5] [--hidden 100] [--max-iter 200]
            [--synthetic-rows 100000] [--synthetic-iter 10]

A grid of 4 learning rates × 4 alphas, cv folds each (80 fits at cv=5),
searched by:

- ``sklearn``: scikit-learn's GridSearchCV(sklearn MLPClassifier,
  n_jobs=-1);
- ``sk-retroprop``: scikit-learn's GridSearchCV(retroprop.MLPClassifier)
  (n_jobs=None: one fit after another, each on every core);
- ``sk-retroprop-jobs``: the same with n_jobs=-1;
- ``retroprop``: retroprop.GridSearchCV(retroprop.MLPClassifier), the
  candidates × folds as the members of one run.

The same settings for every fitter (scikit-learn's defaults but
``hidden_layer_sizes``, ``max_iter``, random_state 0; retroprop's
``device``). Data: digits (1 797 × 64) and make_classification
(``--synthetic-rows`` × 100, 50 informative, 10 classes, random_state 0,
``--synthetic-iter`` epochs at most), each scaled by a StandardScaler
fitted on all rows (the search's folds split them). Each search runs in a
fresh process (the wall clock of ``fit``, refit included); the fitters
are interleaved round by round, and the table gives the median of the
rounds. The script checks that ``retroprop`` and ``sk-retroprop`` give
the same split scores and says so. The load average is printed before
and after each search, and for the fitters that train in the search's
own process (``sk-retroprop``, ``retroprop``) the CPU seconds it used:
on a machine shared with other work the wall clock depends on what the
others do, the CPU time much less.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

LEARNING_RATES = [1e-4, 3e-4, 1e-3, 3e-3]
ALPHAS = [1e-5, 1e-4, 1e-3, 1e-2]


def load(name, rows):
    from sklearn.datasets import load_digits, make_classification
    from sklearn.preprocessing import StandardScaler

    if name == "digits":
        x, y = load_digits(return_X_y=True)
    else:
        x, y = make_classification(n_samples=rows, n_features=100, n_informative=50, n_classes=10, random_state=0)
    return StandardScaler().fit_transform(x), y


def search_once(args):
    """One search in this process, printed as JSON."""
    import warnings

    import numpy as np
    from sklearn import model_selection
    from sklearn.exceptions import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)
    x, y = load(args.data, args.synthetic_rows)
    max_iter = args.max_iter if args.data == "digits" else args.synthetic_iter
    settings = dict(hidden_layer_sizes=tuple(int(h) for h in args.hidden.split(",")), max_iter=max_iter,
                    random_state=0)
    if args.fitter == "sklearn":
        from sklearn.neural_network import MLPClassifier

        search = model_selection.GridSearchCV(MLPClassifier(**settings), grid(), cv=args.cv, n_jobs=-1)
    else:
        import retroprop

        estimator = retroprop.MLPClassifier(device=args.device, **settings)
        if args.fitter == "retroprop":
            search = retroprop.GridSearchCV(estimator, grid(), cv=args.cv)
        else:
            jobs = -1 if args.fitter == "sk-retroprop-jobs" else None
            search = model_selection.GridSearchCV(estimator, grid(), cv=args.cv, n_jobs=jobs)
    start = time.perf_counter()
    used = resource.getrusage(resource.RUSAGE_SELF)
    search.fit(x, y)
    seconds = time.perf_counter() - start
    now = resource.getrusage(resource.RUSAGE_SELF)
    # Other processes' (n_jobs workers') time is not counted: None there.
    cpu = now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime
    in_process = args.fitter in ("sk-retroprop", "retroprop")
    splits = [search.cv_results_[f"split{k}_test_score"].tolist() for k in range(args.cv)]
    print(json.dumps(dict(seconds=seconds, cpu=cpu if in_process else None, best=float(search.best_score_),
                          splits=splits,
                          params=str(search.best_params_), fits=int(np.size(splits)))))


def grid():
    return {"learning_rate_init": LEARNING_RATES, "alpha": ALPHAS}


def load_average():
    return os.getloadavg()[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="digits,synthetic")
    parser.add_argument("--fitters", default="sklearn,sk-retroprop,sk-retroprop-jobs,retroprop")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--hidden", default="100")
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--synthetic-rows", type=int, default=100_000)
    parser.add_argument("--synthetic-iter", type=int, default=10)
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--fitter", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.once:
        search_once(args)
        return
    fitters = args.fitters.split(",")
    times = {}
    cpus = {}
    results = {}
    for r in range(args.rounds):
        for data in args.sets.split(","):
            for fitter in fitters:
                command = [sys.executable, __file__, "--once", "--data", data, "--fitter", fitter,
                           "--device", args.device, "--cv", str(args.cv), "--hidden", args.hidden,
                           "--max-iter", str(args.max_iter), "--synthetic-rows", str(args.synthetic_rows),
                           "--synthetic-iter", str(args.synthetic_iter)]
                before = load_average()
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    sys.exit(f"{data} {fitter} failed:\n{done.stderr}")
                out = json.loads(done.stdout.strip().splitlines()[-1])
                times.setdefault((data, fitter), []).append(out["seconds"])
                if out["cpu"] is not None:
                    cpus.setdefault((data, fitter), []).append(out["cpu"])
                results[(data, fitter)] = out
                cpu = "" if out["cpu"] is None else f" (CPU {out['cpu']:.2f} s)"
                print(f"round {r + 1} {data} {fitter}: {out['seconds']:.2f} s{cpu}, {out['fits']} fits, best "
                      f"{out['best']:.4f} {out['params']} (load {before:.1f} -> {load_average():.1f})",
                      flush=True)
    print()
    print(f"device {args.device}, cv {args.cv}, hidden ({args.hidden},), {args.rounds} round(s), medians")
    print()
    print("| data | search | s | ÷ retroprop.GridSearchCV | CPU s | best mean score |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for data in args.sets.split(","):
        ours = statistics.median(times.get((data, "retroprop"), [float("nan")]))
        for fitter in fitters:
            median = statistics.median(times[(data, fitter)])
            cpu = f"{statistics.median(cpus[(data, fitter)]):.2f}" if (data, fitter) in cpus else "–"
            best = results[(data, fitter)]["best"]
            print(f"| {data} | {fitter} | {median:.2f} | {median / ours:.2f}× | {cpu} | {best:.4f} |")
        if (data, "retroprop") in results and (data, "sk-retroprop") in results:
            same = results[(data, "retroprop")]["splits"] == results[(data, "sk-retroprop")]["splits"]
            print(f"\n{data}: retroprop.GridSearchCV's split scores {'equal' if same else 'DIFFER FROM'} "
                  "scikit-learn's GridSearchCV(retroprop.MLPClassifier)'s\n")


if __name__ == "__main__":
    main()
