"""Pretrained weights: the fallback to random weights is announced, and never pollutes stdout."""
from __future__ import annotations

import json
import urllib.error

import pytest

from pipelines.models import WeightsFallback, WeightsUnavailable, load_state_dict


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty TORCH_HOME and a torch.hub download that announces itself on stdout, then fails."""
    import torchvision.models._api as api

    def download(url, *args, **kwargs):
        print(f'Downloading: "{url}" to somewhere')  # what torch.hub writes, on stdout
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(api, "load_state_dict_from_url", download)


def test_offline_without_fallback_names_the_ways_out(offline, capsys):
    with pytest.raises(WeightsUnavailable, match="resnet18.*URLError.*--weights none.*TORCH_HOME"):
        load_state_dict("resnet18", "imagenet")
    assert capsys.readouterr().out == ""


def test_offline_with_fallback_warns_and_keeps_stdout_clean(offline, capsys):
    with pytest.warns(WeightsFallback, match="resnet18: ImageNet weights are not cached.*URLError.*random weights"):
        assert load_state_dict("resnet18", "imagenet", allow_fallback=True) is None
    captured = capsys.readouterr()
    assert captured.out == "" and "Downloading" in captured.err


def test_unreadable_weights_file_falls_back_with_a_warning(tmp_path):
    bad = tmp_path / "w.pt"
    bad.write_text("not a state dict")
    with pytest.raises(WeightsUnavailable, match="Cannot read weights file"):
        load_state_dict("resnet18", str(bad))
    with pytest.warns(WeightsFallback, match="cannot read weights file"):
        assert load_state_dict("resnet18", str(bad), allow_fallback=True) is None


@pytest.mark.slow
def test_cli_json_stays_parseable_and_the_fallback_is_one_stderr_line(cli, boxed_ws, offline):
    result = cli.run("train", "classifier", "--members", "resnet18", "--image-size", "64", "--limit", "4",
                     "--batch-size", "2", "--epochs", "1", "--threads", "1", "--allow-fallback", "--json")
    assert json.loads(result.stdout)["status"] == "done"
    warning = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warning) == 1 and "resnet18" in warning[0] and "random weights" in warning[0]
