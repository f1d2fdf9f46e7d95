"""Config checks that need no model: pairs of supernet settings that cannot work together are refused."""

from __future__ import annotations

import pytest

from supernet.errors import UsageError
from supernet.variants.config import COMPENSATIONS, OBS_COMPENSATIONS, SupernetConfig


@pytest.mark.parametrize("compensation", [c for c in COMPENSATIONS if c not in OBS_COMPENSATIONS])
def test_obs_without_its_update_is_refused_with_the_fix(compensation: str) -> None:
    with pytest.raises(UsageError, match=r"supernet.compensation=refit_intercept\|refit") as info:
        SupernetConfig(criterion="obs", compensation=compensation)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("compensation", OBS_COMPENSATIONS)
def test_obs_with_a_refit_is_accepted(compensation: str) -> None:
    assert SupernetConfig(criterion="obs", compensation=compensation).needs_gram


def test_the_default_supernet_is_the_measured_best() -> None:
    """bench/criteria.py: OBS ranking with the intercept refit is best under the uniform allocation."""
    cfg = SupernetConfig()
    assert (cfg.criterion, cfg.compensation) == ("obs", "refit_intercept")


@pytest.mark.parametrize(("key", "value"), [("expert_criterion", "random"), ("expert_unit", "row")])
def test_unknown_expert_settings_are_refused_with_the_choices(key: str, value: str) -> None:
    with pytest.raises(UsageError, match=f"supernet.{key}='{value}' is not one of"):
        SupernetConfig(**{key: value})
