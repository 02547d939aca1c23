"""The examples in the docstrings of the members' API run and say what
they show: Trainer(members=k), Trainer.fit from a file, MembersModel, and retroprop's own part of
GridSearchCV's and RandomizedSearchCV's (scikit-learn's documentation,
appended to theirs, has its own examples)."""

import doctest

import pytest
from conftest import need

import retroprop

need("sklearn")

THEIRS = "scikit-learn's documentation follows"


def own_text(obj):
    """``obj``'s docstring up to scikit-learn's, where it appends it."""
    return obj.__doc__.split(THEIRS)[0]


@pytest.mark.parametrize("name", ["Trainer", "Trainer.fit", "MembersModel", "GridSearchCV", "RandomizedSearchCV"])
def test_the_docstring_examples_run(name):
    obj = retroprop
    for part in name.split("."):
        obj = getattr(obj, part)
    test = doctest.DocTestParser().get_doctest(own_text(obj), {}, f"retroprop.{name}", None, 0)
    assert test.examples, f"retroprop.{name}'s docstring has no example"
    report = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
