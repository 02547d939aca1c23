"""Held-out accuracy of retroprop.MLPClassifier beside scikit-learn's over five
splits and seeds (docs/performance.md, "Run 6"): python dev/python_accuracy.py"""
import numpy as np, warnings, sys
warnings.filterwarnings("ignore")
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.neural_network import MLPClassifier as SK
import retroprop
for name, load in [("breast_cancer", load_breast_cancer), ("digits", load_digits)]:
    x, y = load(return_X_y=True)
    res = {"sk": [], "rp_sklearn_init": [], "rp_torch_init": []}
    for seed in range(5):
        xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, stratify=y, random_state=seed)
        s = StandardScaler().fit(xtr); xtr, xte = s.transform(xtr), s.transform(xte)
        res["sk"].append(SK(hidden_layer_sizes=(256, 256), random_state=seed).fit(xtr, ytr).score(xte, yte))
        res["rp_sklearn_init"].append(retroprop.MLPClassifier(hidden_layer_sizes=(256, 256), random_state=seed, device="cpu").fit(xtr, ytr).score(xte, yte))
        res["rp_torch_init"].append(retroprop.MLPClassifier(hidden_layer_sizes=(256, 256), random_state=seed, device="cpu", init="torch").fit(xtr, ytr).score(xte, yte))
    for k, v in res.items():
        print(f"{name:14} {k:16} mean {np.mean(v):.4f}  " + " ".join(f"{a:.4f}" for a in v))
