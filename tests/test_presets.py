"""The study's presets parse into valid configs; unknown ones fail with one line."""
from __future__ import annotations

import pytest

from pipelines.presets import CLASSIFIER_PRESETS, DETECTOR_PRESETS
from workbench.configs import ClassifierConfig, DetectorConfig, make_config
from workbench.errors import InputError


@pytest.mark.parametrize("name", sorted(CLASSIFIER_PRESETS))
def test_classifier_presets_parse(name):
    config = make_config("classifier", name)
    assert isinstance(config, ClassifierConfig) and config.preset == name
    assert config.members == ("resnet18", "densenet121", "inception_v3")
    assert config.image_size == 299 and config.epochs == 30


@pytest.mark.parametrize("name", sorted(DETECTOR_PRESETS))
def test_detector_presets_parse(name):
    config = make_config("detector", name)
    assert isinstance(config, DetectorConfig) and config.preset == name


def test_the_rows_the_issue_names():
    row6 = make_config("classifier", "table2-6")
    assert (row6.augment, row6.optimizer, row6.head) == ("none", "adam", "fc2")
    assert (make_config("detector", "table3-1").augment, make_config("detector", "table3-1").backbone) == ("none", "resnet50")
    t34 = make_config("detector", "table3-4")
    assert (t34.augment, t34.backbone) == ("affine", "mobilenet_v2")
    # The presets differ from one another.
    assert len({tuple(sorted(v.items())) for v in CLASSIFIER_PRESETS.values()}) == 6


def test_options_override_the_preset():
    config = make_config("detector", "table3-1", backbone="mobilenet_v3", epochs=2)
    assert (config.backbone, config.epochs, config.augment) == ("mobilenet_v3", 2, "none")


@pytest.mark.parametrize("kind,name", [("classifier", "table3-1"), ("detector", "table2-1"), ("detector", "nope")])
def test_unknown_preset_is_an_input_error(kind, name):
    with pytest.raises(InputError, match="Unknown .* preset"):
        make_config(kind, name)


def test_unknown_preset_on_the_cli_is_one_line(cli):
    result = cli.run("train", "classifier", "--preset", "table9-9", code=1)
    assert "Unknown classifier preset 'table9-9'" in result.output
    assert "Traceback" not in result.output
