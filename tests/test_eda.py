"""wb eda: streaming moments and line fits by hand, the figures on the repo sample."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from pipelines.eda import RunningMoments, argmax_2d, fit_line, load_grey

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = ("size_scatter", "raw_grid", "resized_grid", "mean_images", "mean_difference", "variance")


def test_running_moments_match_numpy_over_the_stack():
    rng = np.random.default_rng(0)
    stack = rng.uniform(0, 255, size=(7, 4, 5))
    m = RunningMoments((4, 5))
    for image in stack:
        m.add(image)
    assert m.n == 7
    np.testing.assert_allclose(m.mean, stack.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(m.variance, stack.var(axis=0), rtol=1e-10)
    with pytest.raises(ValueError, match="shape"):
        m.add(np.zeros((5, 4)))


def test_running_moments_by_hand():
    m = RunningMoments((1, 2))
    for image in ([[0.0, 10.0]], [[2.0, 10.0]], [[4.0, 10.0]]):
        m.add(np.array(image))
    assert m.mean.tolist() == [[2.0, 10.0]]
    # population variance of 0, 2, 4 = (4 + 0 + 4) / 3
    np.testing.assert_allclose(m.variance, [[8 / 3, 0.0]])


def test_fit_line_recovers_an_exact_line():
    slope, intercept = fit_line([100, 200, 300], [85, 171, 257])
    assert slope == pytest.approx(0.86) and intercept == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        fit_line([5, 5], [1, 2])


def test_argmax_2d_gives_row_and_column():
    values = np.zeros((3, 4))
    values[2, 1] = 9
    assert argmax_2d(values) == (2, 1)


def test_load_grey_resizes_and_converts_rgb(tmp_path):
    rgb = tmp_path / "rgb.jpeg"
    Image.new("RGB", (640, 320), (200, 200, 200)).save(rgb)
    out = load_grey(str(rgb), (299, 299))
    assert out.shape == (299, 299) and out.dtype == np.float32
    assert abs(float(out.mean()) - 200) < 2
    assert load_grey(str(rgb)).shape == (320, 640)


def _assert_real_png(path, min_bytes=10_000):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > min_bytes, f"{path} is only {len(data)} bytes"
    with Image.open(path) as img:
        assert img.width > 300 and img.height > 200
        # Not a blank canvas: a figure has many distinct colours.
        assert len(img.convert("RGB").getcolors(maxcolors=1_000_000) or []) > 50


@pytest.mark.slow
def test_eda_cli_writes_six_figures_and_an_index(cli, imported_sample_db, tmp_path):
    db = tmp_path / "wb.db"
    shutil.copy(imported_sample_db, db)
    out = tmp_path / "eda"
    result = cli.json("--db", db, "eda", "--out", out)
    assert set(result["figures"]) == set(FIGURES)
    index = (out / "index.html").read_text()
    for name in FIGURES:
        path = out / result["figures"][name].rsplit("/", 1)[-1]
        _assert_real_png(path)
        assert f"src='{path.name}'" in index
    # Exact copies are left out: 48 sample images minus the duplicate copies.
    assert sum(result["per_class"].values()) == result["images"] < 48
    for label in ("NORMAL", "PNEUMONIA"):
        assert len(result["samples"][label]) == 8
        assert 0.3 < result["slopes"][label]["slope"] < 1.5
        peak = result["variance_peaks"][label]
        assert 0 <= peak["row"] < 299 and 0 <= peak["col"] < 299 and peak["max"] > 0
    # Fixed seed: the same images are drawn again.
    again = cli.json("--db", db, "eda", "--out", tmp_path / "eda2")
    assert again["samples"] == result["samples"] and again["slopes"] == result["slopes"]


def test_eda_default_folder_is_in_the_workspace(cli, ws, imported_sample_db, tmp_path):
    db = tmp_path / "wb.db"
    shutil.copy(imported_sample_db, db)
    out = cli.run("--db", db, "eda").stdout
    assert f"Index: {ws.root / 'eda' / 'index.html'}" in out
    assert "height = " in out and "variance max" in out


def test_eda_on_empty_workspace_is_a_clear_error(cli, ws):
    ws.db.dispose()  # an empty workspace (a missing one is refused earlier, see test_hostile)
    err = cli.run("eda", code=1).stderr
    assert "No readable images" in err
