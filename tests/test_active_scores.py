"""Active-learning scores against hand-computed arrays, including NaN/inf and empty detections."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines import active as A

NAN = float("nan")


def test_top_box_uncertainty_handles_missing_and_out_of_range():
    got = A.top_box_uncertainty(np.array([0.9, 0.25, NAN, np.inf, 1.2, -0.1]))
    np.testing.assert_allclose(got, [0.1, 0.75, 1.0, 1.0, 0.0, 1.0])


def test_class_scores_from_detections_keeps_best_per_class_and_nan_for_no_chest():
    labels = [np.array([1, 2, 1]), np.array([], dtype=int), np.array([2]), np.array([1])]
    scores = [np.array([0.6, 0.3, 0.8]), np.array([]), np.array([0.7]), np.array([NAN])]
    got = A.class_scores_from_detections(labels, scores)
    np.testing.assert_allclose(got[0], [0.8, 0.3])
    assert np.isnan(got[1]).all()
    np.testing.assert_allclose(got[2], [0.0, 0.7])
    assert np.isnan(got[3]).all()  # its only score was NaN: nothing usable was found


def test_margin_uncertainty_renormalises_and_maxes_out_on_bad_rows():
    probs = np.array([[0.8, 0.2], [0.3, 0.3], [0.6, 0.2], [NAN, NAN], [0.0, 0.0], [0.9, np.inf]])
    got = A.margin_uncertainty(probs)
    # [0.6,0.2] renormalises to [0.75,0.25]: 1 - 0.5
    np.testing.assert_allclose(got, [1 - 0.6, 1.0, 0.5, 1.0, 1.0, 1.0])


def test_entropy_uncertainty_hand_computed():
    p = np.array([[0.5, 0.5], [1.0, 0.0], [0.9, 0.1], [NAN, 0.5], [0.25, 0.25]])
    got = A.entropy_uncertainty(p)
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)
    np.testing.assert_allclose(got, [1.0, 0.0, h, 1.0, 1.0], atol=1e-12)
    three = A.entropy_uncertainty(np.array([[0.25, 0.25, 0.5]]))
    np.testing.assert_allclose(three, [(-2 * 0.25 * math.log(0.25) - 0.5 * math.log(0.5)) / math.log(3)])


def test_box_iou_and_unflip():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [NAN, 0, 1, 1]])
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 1, 1]])
    got = A.box_iou(a, b)
    np.testing.assert_allclose(got[:3], [50 / 150, 1.0, 0.0])
    assert np.isnan(got[3])
    np.testing.assert_allclose(A.unflip_boxes(np.array([[10, 5, 30, 25]]), np.array([100])), [[70, 5, 90, 25]])


def test_localization_instability_maps_flipped_box_back():
    boxes = np.array([[10, 10, 50, 90], [10, 10, 50, 90], [10, 10, 50, 90], [NAN] * 4])
    # image width 100: the mirror of [10, 50] is [50, 90]; a stable detector predicts exactly that.
    flipped = np.array([[50, 10, 90, 90], [40, 10, 80, 90], [NAN] * 4, [50, 10, 90, 90]])
    got = A.localization_instability(boxes, flipped, np.array([100, 100, 100, 100]))
    # second: mapped back [20, 60]; overlap [20, 50] = 30*80 = 2400; union 3200+3200-2400 = 4000
    np.testing.assert_allclose(got, [0.0, 1 - 2400 / 4000, 1.0, 1.0])


def test_detector_uncertainty_is_maximal_when_no_chest_found():
    top = A.top_box_uncertainty(np.array([NAN, 0.9]))
    amb = A.margin_uncertainty(A.class_scores_from_detections([np.array([]), np.array([1, 2])],
                                                              [np.array([]), np.array([0.9, 0.1])]))
    inst = A.localization_instability(np.array([[NAN] * 4, [0, 0, 10, 10]]), np.array([[NAN] * 4, [90, 0, 100, 10]]),
                                      np.array([100, 100]))
    got = A.detector_uncertainty(top, amb, inst)
    np.testing.assert_allclose(got, [1.0, (0.1 + 0.2 + 0.0) / 3])


def test_mutual_information_zero_for_agreement_and_matches_mean_kl():
    agree = np.array([[[0.7, 0.3]], [[0.7, 0.3]], [[0.7, 0.3]]])
    assert A.mutual_information(agree)[0] == pytest.approx(0.0, abs=1e-12)
    split = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # two confident members disagreeing: MI = log 2
    assert A.mutual_information(split)[0] == pytest.approx(1.0)
    p = np.array([[[0.9, 0.1]], [[0.5, 0.5]], [[0.2, 0.8]]])
    mean = p.mean(axis=0)[0]
    kl = np.mean([(m * np.log(m / mean)).sum() for m in p[:, 0]]) / math.log(2)
    assert A.mutual_information(p)[0] == pytest.approx(kl)
    bad = np.array([[[0.9, 0.1], [NAN, 0.5]], [[0.9, 0.1], [0.5, 0.5]]])
    np.testing.assert_allclose(A.mutual_information(bad), [0.0, 1.0], atol=1e-12)


def test_vote_entropy_hand_computed():
    p = np.array([[[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]],
                  [[0.8, 0.2], [0.3, 0.7], [0.1, 0.9]],
                  [[0.7, 0.3], [0.1, 0.9], [np.inf, 0.0]]])
    got = A.vote_entropy(p)
    two_one = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)) / math.log(2)
    np.testing.assert_allclose(got, [0.0, two_one, 1.0])


def test_off_lung_uniform_is_zero_and_all_outside_is_one():
    h = w = 10
    uniform = np.ones((h, w))
    outside = np.zeros((h, w))
    outside[0, :] = 1.0  # only the top row, outside the box
    inside = np.zeros((h, w))
    inside[5, 5] = 1.0
    cams = np.stack([uniform, outside, inside])
    # box y 20..100 px on a 100x100 image = CAM rows 2..9; row 0 lies outside, out_area = 0.2
    boxes = np.array([[0, 20, 100, 100]] * 3)
    sizes = np.array([[100, 100]] * 3)
    got = A.off_lung_attention(cams, boxes, sizes)
    np.testing.assert_allclose(got, [0.0, 1.0, 0.0], atol=1e-12)


def test_off_lung_partial_cells_hand_computed():
    # 2x2 CAM on a 100x100 image; box x 0..75, y 0..100 -> covers column 0 fully, column 1 half.
    cam = np.array([[[1.0, 3.0], [1.0, 3.0]]])
    got = A.off_lung_attention(cam, np.array([[0, 0, 75, 100]]), np.array([[100, 100]]))
    out_area = 0.25
    out_share = (3.0 + 3.0) * 0.5 / 8.0  # half of column 1's mass lies outside
    assert got[0] == pytest.approx((out_share - out_area) / (1 - out_area))


def test_off_lung_unmeasurable_cases_are_nan():
    cams = np.stack([np.ones((4, 4)), np.zeros((4, 4)), np.ones((4, 4)), np.full((4, 4), NAN), np.ones((4, 4))])
    boxes = np.array([[0, 0, 100, 100], [10, 10, 50, 50], [NAN] * 4, [10, 10, 50, 50], [30, 30, 30, 60]])
    got = A.off_lung_attention(cams, boxes, np.array([[100, 100]] * 5))
    assert got[0] == 0.0  # the box covers the whole image: nothing can be outside
    assert np.isnan(got[1:]).all()  # no CAM mass; no box; non-finite CAM; empty box


def test_off_lung_clips_attention_concentrated_inside_to_zero():
    cam = np.zeros((1, 4, 4))
    cam[0, 1:3, 1:3] = 1.0  # all inside the central box
    got = A.off_lung_attention(cam, np.array([[25, 25, 75, 75]]), np.array([[100, 100]]))
    assert got[0] == 0.0


def test_off_lung_members_per_member_and_combined():
    uni = np.ones((2, 2))
    out = np.array([[1.0, 0.0], [0.0, 0.0]])  # top-left cell, outside a box on the right half
    member_cams = np.array([[uni, out], [out, np.zeros((2, 2))]])  # [M=2, N=2, 2, 2]
    boxes = np.array([[50, 0, 100, 100], [50, 0, 100, 100]])
    per, combined = A.off_lung_members(member_cams, boxes, np.array([[100, 100], [100, 100]]))
    np.testing.assert_allclose(per[0], [0.0, 1.0])
    assert per[1, 0] == 1.0 and np.isnan(per[1, 1])
    np.testing.assert_allclose(combined, [0.5, 1.0])  # the unmeasurable member is left out


def test_rank_normalise_ties_and_nan():
    np.testing.assert_allclose(A.rank_normalise(np.array([0.1, 0.5, 0.3])), [1 / 3, 1.0, 2 / 3])
    np.testing.assert_allclose(A.rank_normalise(np.array([2.0, 2.0, NAN, 1.0])), [2.5 / 3, 2.5 / 3, 0.0, 1 / 3])
    assert A.rank_normalise(np.array([])).shape == (0,)


def test_combine_scores_weights_ranks_not_raw_values():
    comps = {"det": np.array([0.01, 0.02, 0.03]), "off_lung": np.array([900.0, 100.0, 500.0])}
    got = A.combine_scores(comps, {"det": 1.0, "off_lung": 3.0})
    # ranks: det [1/3, 2/3, 1]; off_lung [1, 1/3, 2/3]
    np.testing.assert_allclose(got, [(1 / 3 + 3) / 4, (2 / 3 + 1) / 4, (1 + 2) / 4])
    np.testing.assert_allclose(A.combine_scores(comps, {"det": 1.0, "off_lung": 0.0}), [1 / 3, 2 / 3, 1.0])
    with pytest.raises(ValueError, match="unknown score component"):
        A.combine_scores(comps, {"nope": 1.0})
    with pytest.raises(ValueError, match="positive"):
        A.combine_scores(comps, {"det": 0.0})
    with pytest.raises(ValueError):
        A.combine_scores(comps, {"det": -1.0})


def test_cam_outside_share_reports_raw_share_and_area():
    cam = np.array([[[1.0, 3.0], [1.0, 3.0]]])
    share, area = A.cam_outside_share(cam, np.array([[0, 0, 75, 100]]), np.array([[100, 100]]))
    assert share[0] == pytest.approx(0.375) and area[0] == pytest.approx(0.25)
    share, area = A.cam_outside_share(np.ones((1, 2, 2)), np.array([[NAN] * 4]), np.array([[100, 100]]))
    assert np.isnan(share[0]) and np.isnan(area[0])


def test_score_components_for_a_pool_with_one_image_without_chest():
    comps = A.score_components(
        top_scores=np.array([0.8, NAN]), class_scores=np.array([[0.8, 0.2], [NAN, NAN]]),
        boxes=np.array([[0, 0, 50, 50], [NAN] * 4]), flip_boxes=np.array([[50, 0, 100, 50], [NAN] * 4]),
        widths=np.array([100, 100]), probs=np.array([[0.5, 0.5], [1.0, 0.0]]),
        member_probs=np.array([[[0.5, 0.5], [1.0, 0.0]], [[0.5, 0.5], [1.0, 0.0]]]), off_lung=np.array([0.3, NAN]))
    assert set(comps) == set(A.COMPONENTS)
    np.testing.assert_allclose(comps["det_confidence"], [0.2, 1.0])
    np.testing.assert_allclose(comps["det_ambiguity"], [0.4, 1.0])
    np.testing.assert_allclose(comps["det_instability"], [0.0, 1.0])
    np.testing.assert_allclose(comps["uncertainty"], [0.2, 1.0])
    np.testing.assert_allclose(comps["classifier"], [0.5, 0.0], atol=1e-12)
    assert np.isnan(comps["off_lung"][1])
