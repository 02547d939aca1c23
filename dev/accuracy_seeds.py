"""Test accuracy of retroprop.MLPClassifier beside scikit-learn's over ten
random_states (docs/performance.md, "Run 8"): one seed's accuracies
differ by a test row or two either way.

    python dev/accuracy_seeds.py breast_cancer,digits,wine [--hidden 256,256]

The data sets, split and scaling are python_bench.py's; every setting
but random_state is scikit-learn's default.
"""

import argparse
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from python_bench import load_set  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sets", help="comma-separated: digits, breast_cancer, synthetic, iris, wine, moons")
    parser.add_argument("--hidden", default="256,256")
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()

    import retroprop
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    warnings.simplefilter("ignore", ConvergenceWarning)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    for name in args.sets.split(","):
        xtr, xte, ytr, yte = load_set(name, 100000)
        theirs, ours = [], []
        for seed in range(args.seeds):
            settings = dict(hidden_layer_sizes=hidden, max_iter=200, random_state=seed)
            theirs.append(MLPClassifier(**settings).fit(xtr, ytr).score(xte, yte))
            ours.append(retroprop.MLPClassifier(device="cpu", **settings).fit(xtr, ytr).score(xte, yte))
        print(f"{name}: scikit-learn mean {np.mean(theirs):.4f} (sd {np.std(theirs):.4f}), "
              f"retroprop mean {np.mean(ours):.4f} (sd {np.std(ours):.4f}), "
              f"difference {100 * (np.mean(ours) - np.mean(theirs)):+.2f} points", flush=True)
        print("  scikit-learn", " ".join(f"{a:.4f}" for a in theirs))
        print("  retroprop   ", " ".join(f"{a:.4f}" for a in ours))


if __name__ == "__main__":
    main()
