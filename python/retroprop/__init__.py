"""retroprop: train dense neural networks (multilayer perceptrons) by
backpropagation on the GPU (WGSL compute shaders through wgpu) or on the
CPU reference backend, with ``torch.optim``'s optimizers exactly.

Two APIs over the same Rust library:

- ``retroprop.MLPClassifier`` and ``retroprop.MLPRegressor``: scikit-learn
  estimators with scikit-learn's parameter names (needs scikit-learn);
  ``retroprop.GridSearchCV`` and ``retroprop.RandomizedSearchCV``:
  scikit-learn's searches, training the candidates × folds of one
  architecture as the members of one run.
- ``retroprop.Trainer`` (mirrors the library's ``TrainConfig`` with
  ``torch.optim``'s names) and the ``retroprop.Model`` it returns, whose
  ``state_dict()`` loads into the equivalent ``torch.nn`` module;
  ``Trainer(..., members=k)`` trains k networks together, each its lone
  run, into a ``retroprop.MembersModel``.
"""

import os as _os

# OpenBLAS's idle threads spin for about 0.1 s after each product beside
# the CPU backend's own, which then share the cores with them; a timeout
# of 2**4 cycles lets them sleep at once (docs/performance.md, "Which GEMM
# auto runs", measured by dev/cpu_gemm_choice.sh with TIMEOUTS). OpenBLAS
# reads it when it is loaded, after this import; a value set by the user
# is kept.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from ._core import MembersHistory, MembersModel, Model, Trainer, load, optimizer_defaults  # noqa: E402
from ._retroprop import __version__  # noqa: E402

__all__ = [
    "GridSearchCV",
    "MLPClassifier",
    "MLPRegressor",
    "MembersHistory",
    "MembersModel",
    "Model",
    "RandomizedSearchCV",
    "TabMClassifier",
    "TabMRegressor",
    "Trainer",
    "load",
    "optimizer_defaults",
    "__version__",
]


def __getattr__(name):
    # The estimators need scikit-learn; the rest of the package does not.
    modules = {"MLPClassifier": "sklearn", "MLPRegressor": "sklearn", "GridSearchCV": "search",
               "RandomizedSearchCV": "search", "TabMClassifier": "tabm", "TabMRegressor": "tabm"}
    if name in modules:
        import importlib

        try:
            module = importlib.import_module(f".{modules[name]}", __name__)
        except ImportError as e:
            raise ImportError(
                f"retroprop.{name} needs scikit-learn: pip install scikit-learn ({e})"
            ) from e
        return getattr(module, name)
    raise AttributeError(f"module 'retroprop' has no attribute {name!r}")
