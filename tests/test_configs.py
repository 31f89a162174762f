"""Defaults live in the config dataclasses: the CLI passes only what was given, and shows the defaults."""
from __future__ import annotations

import pytest

from pipelines import active
from workbench.cli.common import with_default
from workbench.configs import EvalConfig, SplitConfig, SuggestConfig, fill, shown_default, validate_eval_config
from workbench.errors import InputError


def test_fill_keeps_the_dataclass_default_for_options_not_given():
    assert fill(EvalConfig, part=None, bootstrap=10) == EvalConfig(bootstrap=10)
    assert fill(SplitConfig, seed=None, ratios=(0.5, 0.25, 0.25)) == SplitConfig(ratios=(0.5, 0.25, 0.25))
    assert fill(SuggestConfig, detector_run=1, classifier_run=2, k=None).k == SuggestConfig(1, 2).k


def test_shown_default_formats_tuples_and_skips_none():
    assert shown_default(SplitConfig, "ratios") == "0.8,0.1,0.1"
    assert shown_default(SuggestConfig, "weights") == "uncertainty=1,classifier=1,off_lung=1"
    assert shown_default(SuggestConfig, "split") is None and shown_default(SuggestConfig, "detector_run") is None
    assert with_default("Random seed.", SplitConfig, "seed") == "Random seed. (default: 42)"


def test_eval_settings_are_checked():
    for bad, message in ((EvalConfig(part="holdout"), "Unknown part"), (EvalConfig(checkpoint="first"), "Unknown checkpoint"),
                         (EvalConfig(device="tpu"), "Unknown device"), (EvalConfig(batch_size=0), "--batch-size")):
        with pytest.raises(InputError, match=message):
            validate_eval_config(bad)


def _help(cli, *args: str) -> str:
    """The help text as one line, without rich's box borders."""
    return " ".join(cli.run(*args, "--help").output.replace("│", " ").split())


def test_help_shows_the_config_defaults_and_every_suggest_component(cli):
    suggest = _help(cli, "suggest")
    for name in active.COMPONENTS:
        assert name in suggest
    assert f"(default: {SuggestConfig.k})" in suggest
    evaluate = _help(cli, "eval")
    assert f"(default: {EvalConfig.bootstrap})" in evaluate and "--device" in evaluate
    assert "(default: detector 10, classifier 30)" in _help(cli, "train", "detector")
