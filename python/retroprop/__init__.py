"""retroprop: train dense neural networks (multilayer perceptrons) by
backpropagation on the GPU (WGSL compute shaders through wgpu) or on the
CPU reference backend, with ``torch.optim``'s optimizers exactly.

Two APIs over the same Rust library:

- ``retroprop.MLPClassifier`` and ``retroprop.MLPRegressor``: scikit-learn
  estimators with scikit-learn's parameter names (needs scikit-learn).
- ``retroprop.Trainer`` (mirrors the library's ``TrainConfig`` with
  ``torch.optim``'s names) and the ``retroprop.Model`` it returns, whose
  ``state_dict()`` loads into the equivalent ``torch.nn`` module.
"""

import os as _os

# OpenBLAS's idle threads spin for about 0.1 s after each product beside
# the CPU backend's own, which then share the cores with them; a timeout
# of 2**4 cycles lets them sleep at once (docs/performance.md, "Which GEMM
# auto runs"). OpenBLAS reads it when it is loaded, after this import; a
# value set by the user is kept.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from ._core import Model, Trainer, load, optimizer_defaults  # noqa: E402
from ._retroprop import __version__  # noqa: E402

__all__ = [
    "MLPClassifier",
    "MLPRegressor",
    "Model",
    "Trainer",
    "load",
    "optimizer_defaults",
    "__version__",
]


def __getattr__(name):
    # The estimators need scikit-learn; the rest of the package does not.
    if name in ("MLPClassifier", "MLPRegressor"):
        try:
            from . import sklearn as _estimators
        except ImportError as e:
            raise ImportError(
                f"retroprop.{name} needs scikit-learn: pip install scikit-learn ({e})"
            ) from e
        return getattr(_estimators, name)
    raise AttributeError(f"module 'retroprop' has no attribute {name!r}")
