"""Categorical columns of a pandas DataFrame, one-hot encoded before the
network as the ``tabm`` package's ``_OneHotEncoding`` does
(``cat_cardinalities``): a row's inputs are its numeric columns, in
column order, then each categorical column's block of as many slots as it
has categories, in column order, the slot of the row's category 1 and the
others 0 (torch's ``column_stack([x_num, one_hot(x_cat)])``, and
``pandas.get_dummies(X, columns=categorical)``'s columns).

A column is categorical when its dtype is pandas' ``category``, ``object``
or a string dtype. Its categories: a ``category`` column's own
(``X[c].cat.categories``, in their order, used or not), else the distinct
values of the training rows, sorted. A missing value (NaN, None) in a
categorical column, and at transform time a value not among its
categories, is a ``ValueError`` naming the row (its position), the column
and the value: fill missing values with a category of their own first
(``X[c].fillna("missing")``, or ``X[c].cat.add_categories("missing")``).

The scikit-learn estimators use it for DataFrames with such columns; a
NumPy array, or a DataFrame of numbers only, is not touched::

    encoder = TabularEncoder().fit(frame)
    x = encoder.transform(frame)   # float32, C-contiguous
    encoder.n_numeric, encoder.cardinalities  # tabm.TabM's n_num_features, cat_cardinalities
"""

import numpy as np


def _pandas():
    try:
        import pandas
    except ImportError:  # pragma: no cover - pandas is optional
        return None
    return pandas


def _is_categorical_dtype(dtype):
    pd = _pandas()
    return (
        isinstance(dtype, pd.CategoricalDtype)
        or dtype == object
        or (pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_numeric_dtype(dtype))
    )


def has_categorical_columns(X):
    """Whether ``X`` is a pandas DataFrame with a categorical column (which
    :class:`TabularEncoder` encodes)."""
    pd = _pandas()
    if pd is None or not isinstance(X, pd.DataFrame):
        return False
    return any(_is_categorical_dtype(dtype) for dtype in X.dtypes)


class TabularEncoder:
    """One-hot encoding of a DataFrame's categorical columns after its
    numeric ones (see the module's docstring).

    After ``fit``: ``columns`` (every column's name, in order),
    ``categorical_columns`` and ``numeric_columns`` (names),
    ``categories`` (one array per categorical column, its slots in order),
    ``cardinalities`` (their lengths), ``n_numeric`` and ``n_outputs``
    (the width ``transform`` returns)."""

    def fit(self, X):
        """Finds the categorical columns of DataFrame ``X`` and their
        categories; returns ``self``."""
        pd = _pandas()
        if pd is None or not isinstance(X, pd.DataFrame):
            raise TypeError(f"TabularEncoder takes a pandas DataFrame, not {type(X).__name__}")
        self.columns = list(X.columns)
        self.categorical_columns = [c for c in X.columns if _is_categorical_dtype(X[c].dtype)]
        self.numeric_columns = [c for c in X.columns if c not in set(self.categorical_columns)]
        self.categories = [self._categories_of(X, c) for c in self.categorical_columns]
        self.cardinalities = [len(c) for c in self.categories]
        self.n_numeric = len(self.numeric_columns)
        self.n_outputs = self.n_numeric + sum(self.cardinalities)
        return self

    @staticmethod
    def _categories_of(X, column):
        values = X[column]
        _check_no_missing(values, column)
        if hasattr(values, "cat"):
            categories = np.asarray(values.cat.categories, dtype=object)
        else:
            distinct = values.unique()
            try:
                categories = np.asarray(sorted(distinct), dtype=object)
            except TypeError as e:
                kinds = sorted({type(v).__name__ for v in distinct})
                raise ValueError(
                    f"categorical column {column!r} mixes values of types {', '.join(kinds)}, "
                    "which do not sort: make them one type (astype(str))"
                ) from e
        if len(categories) == 0:
            raise ValueError(f"categorical column {column!r} has no categories")
        return categories

    def check_columns(self, X):
        """A ``ValueError`` unless ``X`` is a DataFrame with the fitted
        columns, in order."""
        pd = _pandas()
        if pd is None or not isinstance(X, pd.DataFrame):
            raise ValueError(
                f"the estimator was fitted on a DataFrame with categorical columns "
                f"{self.categorical_columns}: give X as a DataFrame with its columns, "
                f"not {type(X).__name__}"
            )
        if list(X.columns) != self.columns:
            raise ValueError(
                f"X has columns {list(X.columns)}, but the estimator was fitted on {self.columns} "
                "(the same names, in the same order)"
            )

    def transform(self, X):
        """``X`` as the network's inputs: float32 ``[rows, n_outputs]``,
        C-contiguous. A missing value in a categorical column, or a value
        not among its categories, is a ``ValueError`` naming its row
        (position), column and value."""
        self.check_columns(X)
        pd = _pandas()
        rows = len(X)
        blocks = []
        if self.numeric_columns:
            blocks.append(X[self.numeric_columns].to_numpy(dtype=np.float32))
        for column, categories in zip(self.categorical_columns, self.categories):
            values = X[column]
            _check_no_missing(values, column)
            codes = pd.Index(categories, dtype=object).get_indexer(values.to_numpy(dtype=object))
            unseen = np.flatnonzero(codes < 0)
            if unseen.size:
                row = int(unseen[0])
                raise ValueError(
                    f"row {row}, column {column!r}: category {values.iloc[row]!r} was not seen in "
                    f"fit (its categories: {_listed(categories)})"
                )
            block = np.zeros((rows, len(categories)), dtype=np.float32)
            block[np.arange(rows), codes] = 1.0
            blocks.append(block)
        if not blocks:
            return np.zeros((rows, 0), dtype=np.float32)
        return np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32)

    def fit_transform(self, X):
        """``fit(X)``, then ``transform(X)``."""
        return self.fit(X).transform(X)


def _check_no_missing(values, column):
    missing = np.flatnonzero(values.isna().to_numpy())
    if missing.size:
        row = int(missing[0])
        raise ValueError(
            f"row {row}, column {column!r}: a missing value ({values.iloc[row]!r}) in a categorical "
            "column; fill it with a category of its own first (such as 'missing')"
        )


def _listed(categories, most=10):
    shown = ", ".join(repr(c) for c in categories[:most])
    more = len(categories) - most
    return shown + (f" and {more} more" if more > 0 else "")
