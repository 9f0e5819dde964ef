"""Settings given as text (``--set key=value``) are read as their field's type."""

from __future__ import annotations

import pytest

from bcemb.experiments.config import profile_config


def test_optional_field_unset_now_is_parsed_as_its_type() -> None:
    # train.patience is None in the paper profile: "3" must become the int 3, not the string
    # (which failed later, inside validate, with a TypeError).
    cfg = profile_config("paper", **{"train.patience": "3", "consumer.seeds": "3"})
    assert cfg.train.patience == 3
    assert cfg.consumer.seeds == 3


def test_none_clears_an_optional_field() -> None:
    assert profile_config("quick", **{"train.patience": "none"}).train.patience is None


def test_bad_value_names_the_setting() -> None:
    with pytest.raises(ValueError, match="train.patience"):
        profile_config("paper", **{"train.patience": "soon"})
