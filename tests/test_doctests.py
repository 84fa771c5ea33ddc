"""The examples in the public docstrings run and say what they show."""

import doctest
import importlib

import pytest

MODULES = [
    "nba_fast",
    "nba_fast.api",
    "nba_fast.config",
    "nba_fast.render",
    "nba_fast.sms",
    "nba_fast.campaign",
    "nba_fast.store",
    "nba_fast.demo_data",
    "nba_fast.templating",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0
