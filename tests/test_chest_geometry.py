"""Crop and fill geometry against hand-computed boxes (pipelines.chest), and the planted markers
of `wb stress plant` (pipelines.stress): a marker never covers a pixel of the chest box."""
from __future__ import annotations

import numpy as np
import pytest

from pipelines import chest, stress


def test_box_maps_to_pixel_centres_on_a_shrunk_array():
    # File 100 x 50, array 50 wide x 25 high (half): (10, 20, 30, 40) -> x 5..14, y 10..19.
    assert chest.box_on_array((10, 20, 30, 40), (100, 50), (25, 50, 3)) == (5, 10, 15, 20)
    # Fractional edges at full size: pixel j is in when x_min <= j + 0.5 < x_max.
    # x: 2.3 -> first centre 2.5 (j = 2); 7.6 -> last centre 7.5 (j = 7), so columns 2..7.
    assert chest.box_on_array((2.3, 0.0, 7.6, 5.0), (10, 5), (5, 10)) == (2, 0, 8, 5)
    # 2.6 excludes column 2 (centre 2.5); 7.5 excludes column 7 (centre 7.5 is not < 7.5).
    assert chest.box_on_array((2.6, 0.0, 7.5, 5.0), (10, 5), (5, 10)) == (3, 0, 7, 5)


def test_boxes_touching_or_beyond_the_border_are_clipped():
    assert chest.box_on_array((0, 0, 10, 5), (10, 5), (5, 10)) == (0, 0, 10, 5)
    assert chest.box_on_array((-4, -1, 14, 9), (10, 5), (5, 10)) == (0, 0, 10, 5)


def test_fill_outside_and_inside_on_a_non_square_image():
    image = np.arange(6 * 8, dtype=np.uint8).reshape(6, 8)[..., None].repeat(3, axis=2) + 10  # H 6, W 8
    box_px = chest.box_on_array((2, 1, 5, 4), (8, 6), image.shape)  # x 2..4, y 1..3: 9 pixels
    assert box_px == (2, 1, 5, 4)
    only = chest.view(image, box_px, "chest_only")
    removed = chest.view(image, box_px, "chest_removed")
    inside = np.zeros((6, 8), dtype=bool)
    inside[1:4, 2:5] = True
    assert (only[inside] == image[inside]).all() and (only[~inside] == chest.GREY).all()
    assert (removed[inside] == chest.GREY).all() and (removed[~inside] == image[~inside]).all()
    assert inside.sum() == 9
    assert (chest.view(image, None, "chest_removed") == image).all()  # no box: nothing to remove


@pytest.mark.parametrize("fill", chest.FILLS)
def test_every_fill_changes_only_its_region(fill):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    image[..., 1] = image[..., 2] = image[..., 0]
    box_px = (5, 8, 20, 30)
    out = chest.fill_region(image, box_px, inside=True, fill=fill)
    mask = chest.box_mask(image.shape, box_px)
    assert (out[~mask] == image[~mask]).all()
    assert not (out[mask] == image[mask]).all()
    assert out.dtype == np.uint8 and out.shape == image.shape


def test_crop_with_margin_is_clipped_and_never_empty():
    shape = (50, 100)  # H, W
    assert chest.crop_range(shape, (10, 10, 30, 20), 0.0) == (10, 10, 30, 20)
    # margin 0.1: 2 px of the 20 px width, 1 px of the 10 px height on each side
    assert chest.crop_range(shape, (10, 10, 30, 20), 0.1) == (8, 9, 32, 21)
    # at the border: clipped, not shifted
    assert chest.crop_range(shape, (0, 0, 100, 50), 0.2) == (0, 0, 100, 50)
    assert chest.crop_range(shape, (5, 5, 5, 9), 0.0) == (0, 0, 100, 50)  # degenerate box: the whole image
    image = np.zeros((50, 100, 3), dtype=np.uint8)
    assert chest.crop(image, (10, 10, 30, 20), 0.1).shape == (12, 24, 3)


def test_crop_fraction_keeps_enough_pixels_for_the_crop():
    assert chest.crop_fraction(None, (400, 300), 0.0) == 1.0
    assert chest.crop_fraction((0, 0, 200, 300), (400, 300), 0.0) == pytest.approx(0.5)
    assert chest.crop_fraction((100, 0, 200, 150), (400, 300), 0.5) == pytest.approx(0.5)  # 200/400 and 300/300 -> 0.5


def test_input_modes_registry():
    assert set(chest.INPUT_MODES) == {"full", "chest-crop", "chest-mask"}
    image = np.full((10, 20, 3), 7, dtype=np.uint8)
    assert chest.INPUT_MODES["chest-crop"].apply(image, (5, 2, 15, 8), 0.0).shape == (6, 10, 3)
    masked = chest.INPUT_MODES["chest-mask"].apply(image, (5, 2, 15, 8), 0.0)
    assert masked.shape == image.shape and masked[0, 0, 0] == chest.GREY and masked[5, 10, 0] == 7
    with pytest.raises(ValueError, match="Unknown input mode"):
        chest.get_input_mode("lungs")


# --- planted markers -----------------------------------------------------------------------------

@pytest.mark.parametrize("place", stress.PLACES)
@pytest.mark.parametrize("shape", [*stress.SHAPES, "mixed"])
def test_a_marker_never_touches_the_box(place, shape):
    rng = np.random.default_rng(1)
    for trial in range(30):
        w, h = int(rng.integers(60, 200)), int(rng.integers(60, 200))
        x0, y0 = rng.uniform(0, w * 0.4), rng.uniform(0, h * 0.4)
        box = (x0, y0, rng.uniform(x0 + 5, w), rng.uniform(y0 + 5, h))
        image = np.zeros((h, w), dtype=np.uint8)
        out, where = stress.plant_marker(image, box, stress.MarkerSpec(shape=shape, size=0.1, place=place), rng)
        bx0, by0, bx1, by1 = chest.box_on_array(box, (w, h), (h, w))
        assert (out[by0:by1, bx0:bx1] == 0).all(), f"marker inside the box (trial {trial})"
        if where is None:
            assert (out == 0).all()
            continue
        assert out.max() == 255 and (out > 0).sum() <= where.side ** 2
        mx0, my0, mx1, my1 = where.box
        assert 0 <= mx0 and 0 <= my0 and mx1 <= w and my1 <= h
        assert mx1 <= bx0 or mx0 >= bx1 or my1 <= by0 or my0 >= by1
        if place == "corners":
            assert (mx1 <= np.ceil(w / 4) or mx0 >= np.floor(3 * w / 4)) and (my1 <= np.ceil(h / 4) or my0 >= np.floor(3 * h / 4))


def test_free_positions_by_hand():
    # 10 x 10 image, box covering x 2..9 (all rows): only a 2-wide strip on the left is free.
    pos = stress.free_positions(10, 10, (2, 0, 10, 10), 2, "anywhere")
    assert set(map(tuple, pos)) == {(0, y) for y in range(9)}
    assert len(stress.free_positions(10, 10, (1, 0, 10, 10), 2, "anywhere")) == 0  # no room: nothing planted
    # margin: the widest margin is the bottom one (rows 6..9), marker centred there
    assert stress.free_positions(10, 10, (0, 0, 10, 6), 2, "margin").tolist() == [[4, 7]]


def test_marker_rates_reverse_in_test():
    assert stress.marked_share("PNEUMONIA", "train", 0.9, 0.1) == 0.9
    assert stress.marked_share("NORMAL", "val", 0.9, 0.1) == 0.1
    assert stress.marked_share("PNEUMONIA", "test", 0.9, 0.1) == 0.1
    assert stress.marked_share("NORMAL", "test", 0.9, 0.1) == 0.9


def test_stamps_have_the_shape_they_name():
    assert stress.stamp("square", 4).all()
    disc = stress.stamp("disc", 9)
    assert disc[4, 4] and not disc[0, 0]
    ring = stress.stamp("ring", 15)
    assert ring[7, 0] and not ring[7, 7]
    letter = stress.stamp("letter", 14, "L")
    assert letter[:, 0].all() and letter[-1].all() and not letter[0, -1]
