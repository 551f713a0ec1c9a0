"""Per-image geometry: target shapes to API ratios, and the finishing crop."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchd.geometry import (
    Ratios,
    TargetUnreachable,
    expanded_size,
    finish_box,
    target_ratios,
)


def test_wide_image_to_square_grows_top_and_bottom_evenly():
    r = target_ratios(300, 180, (1, 1), margin=0.05)
    assert r.left == pytest.approx(0.05)
    assert r.right == pytest.approx(0.05)
    # width 330; height must reach 330 → top + bottom = 330/180 − 1
    assert r.top + r.bottom == pytest.approx(330 / 180 - 1)
    assert r.top == pytest.approx(0.41667, abs=1e-5)
    assert r.bottom == pytest.approx(r.top)
    assert expanded_size(300, 180, r) == (330, 330)


def test_anchor_bottom_keeps_the_original_against_the_bottom():
    r = target_ratios(300, 180, (1, 1), margin=0.05, anchor="bottom")
    assert r.bottom == pytest.approx(0.05)
    assert r.top == pytest.approx(330 / 180 - 1 - 0.05)
    assert r.top == pytest.approx(0.7833, abs=1e-4)
    assert expanded_size(300, 180, r) == (330, 330)


def test_anchor_top_puts_all_the_rest_below():
    r = target_ratios(300, 180, (1, 1), anchor="top")
    assert r.top == pytest.approx(0.05)
    assert r.bottom == pytest.approx(0.7833, abs=1e-4)


@pytest.mark.parametrize("anchor", ["left", "right", "center"])
def test_anchor_on_the_other_axis_changes_nothing(anchor):
    assert target_ratios(300, 180, (1, 1), anchor=anchor) == target_ratios(300, 180, (1, 1))


def test_anchor_left_and_right_share_the_width_on_one_side():
    left = target_ratios(200, 300, (1, 1), anchor="left")
    right = target_ratios(200, 300, (1, 1), anchor="right")
    assert left.left == pytest.approx(0.05)
    assert left.right == pytest.approx(330 / 200 - 1 - 0.05)
    assert right.right == pytest.approx(0.05)
    assert right.left == pytest.approx(left.right)


def test_tall_image_to_square_is_about_330_a_side():
    r = target_ratios(150, 300, (1, 1))
    assert r.top == pytest.approx(0.05)
    assert r.bottom == pytest.approx(0.05)
    w, h = expanded_size(150, 300, r)
    assert (w, h) == (330, 330)


def test_square_image_to_square_gets_the_margin_only():
    r = target_ratios(200, 200, (1, 1))
    assert r == Ratios(0.05, 0.05, 0.05, 0.05)
    assert expanded_size(200, 200, r) == (220, 220)


def test_size_2_to_1_widens_a_3_to_2_image():
    r = target_ratios(300, 200, (512, 256), margin=0.05)
    assert r.top == pytest.approx(0.05)
    assert r.bottom == pytest.approx(0.05)
    # height 220 → width 440 → left + right = 440/300 − 1
    assert r.left == pytest.approx((440 / 300 - 1) / 2)
    assert r.left == pytest.approx(0.2333, abs=1e-4)
    assert expanded_size(300, 200, r) == (440, 220)


def test_strip_that_needs_more_than_one_per_side_is_unreachable_with_the_needed_ratios():
    with pytest.raises(TargetUnreachable) as caught:
        target_ratios(1000, 90, (1, 1))
    needed = (1100 / 90 - 1) / 2  # 5.6111: each of top/bottom
    assert caught.value.needed.top == pytest.approx(needed)
    assert caught.value.needed.bottom == pytest.approx(needed)
    assert caught.value.needed.left == pytest.approx(0.05)
    assert "1000×90" in caught.value.reason
    assert "top/bottom 5.61 each" in caught.value.reason
    assert "1:1" in caught.value.reason
    assert "at most 1.0" in caught.value.reason
    assert str(caught.value) == caught.value.reason
    assert isinstance(caught.value, ValueError)


def test_anchor_can_make_a_reachable_target_unreachable_and_names_that_side():
    # 300×140 to 1:1: centred each of top/bottom needs 0.68; anchored at the bottom the top
    # needs all of it: 0.05 + (330/140 − 1 − 0.1) = 1.31.
    assert target_ratios(300, 140, (1, 1)).top == pytest.approx(0.05 + (330 / 140 - 1.1) / 2)
    with pytest.raises(TargetUnreachable) as caught:
        target_ratios(300, 140, (1, 1), anchor="bottom")
    assert caught.value.needed.top == pytest.approx(330 / 140 - 1 - 0.05)
    assert caught.value.needed.bottom == pytest.approx(0.05)
    assert "needs top 1.31 to reach 1:1" in caught.value.reason


def test_a_ratio_of_exactly_one_is_allowed_despite_float_noise():
    r = target_ratios(300, 110, (1, 1), margin=0.05)  # height must reach 330: (3 − 1)/2 = 1.0
    assert r.top == pytest.approx(1.0)
    assert r.top <= 1.0
    assert r.bottom <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"margin": 0}, "margin"),
        ({"margin": 1.5}, "margin"),
        ({"anchor": "middle"}, "anchor"),
        ({"aspect": (0, 1)}, "aspect"),
        ({"width": 0}, "size"),
    ],
)
def test_nonsense_arguments_are_refused(kwargs, message):
    args = {"width": 300, "height": 200, "aspect": (1, 1)} | kwargs
    with pytest.raises(ValueError, match=message):
        target_ratios(**args)


def test_finish_box_trims_rounding_pixels_evenly():
    assert finish_box(331, 330, (1, 1)) == (0, 0, 330, 330)
    assert finish_box(334, 330, (1, 1)) == (2, 0, 332, 330)
    assert finish_box(330, 330, (1, 1)) == (0, 0, 330, 330)
    assert finish_box(441, 220, (2, 1)) == (0, 0, 440, 220)


def test_finish_box_takes_the_nearest_box_when_the_exact_aspect_would_cut_too_much():
    # 1200:628 reduces to 300:157: an exact box in 1199×628 would be 900×471.
    left, top, right, bottom = finish_box(1199, 628, (1200, 628))
    assert (right - left, bottom - top) == (1199, 627)


def test_finish_box_keeps_an_exact_16_9_box_when_it_costs_a_few_pixels():
    left, top, right, bottom = finish_box(1000, 563, (16, 9))
    assert (right - left) * 9 == (bottom - top) * 16
    assert (right - left, bottom - top) == (992, 558)
    assert (left, top) == (4, 2)


sides = st.integers(min_value=64, max_value=4096)
terms = st.integers(min_value=1, max_value=4)
margins = st.sampled_from([0.01, 0.05, 0.1, 0.25])
anchors = st.sampled_from(["center", "top", "bottom", "left", "right"])


@settings(max_examples=800, deadline=None)
@given(width=sides, height=sides, aw=terms, ah=terms, margin=margins, anchor=anchors)
def test_reachable_targets_land_on_the_aspect_and_stay_in_the_api_range(
    width, height, aw, ah, margin, anchor
):
    try:
        r = target_ratios(width, height, (aw, ah), margin=margin, anchor=anchor)
    except TargetUnreachable as exc:
        assert max(exc.needed.top, exc.needed.bottom, exc.needed.left, exc.needed.right) > 1
        assert min(exc.needed.top, exc.needed.bottom, exc.needed.left, exc.needed.right) > 0
        return
    for value in (r.top, r.bottom, r.left, r.right):
        assert 0 < value <= 1
        assert value >= margin - 1e-12
    w, h = expanded_size(width, height, r)
    # Each dimension is rounded by at most half a pixel.
    assert abs(w * ah - h * aw) <= (aw + ah) / 2 + 1e-6
    left, top, right, bottom = finish_box(w, h, (aw, ah))
    bw, bh = right - left, bottom - top
    assert bw * ah == bh * aw
    assert left >= 0 and top >= 0 and right <= w and bottom <= h
    # Only the rounding pixels (and the few needed for whole aspect units) go.
    assert w - bw <= aw + 1
    assert h - bh <= ah + 1
    # Evenly: the two sides differ by at most one pixel.
    assert abs(left - (w - right)) <= 1
    assert abs(top - (h - bottom)) <= 1


@settings(max_examples=300, deadline=None)
@given(width=sides, height=sides, aw=terms, ah=terms)
def test_unreachable_exactly_when_the_centred_share_exceeds_one(width, height, aw, ah):
    margin = 0.05
    long_factor = max(width * ah / (height * aw), height * aw / (width * ah))
    per_side = margin + (1 + 2 * margin) * (long_factor - 1) / 2
    if per_side > 1 + 1e-9:
        with pytest.raises(TargetUnreachable):
            target_ratios(width, height, (aw, ah), margin=margin)
    else:
        r = target_ratios(width, height, (aw, ah), margin=margin)
        assert math.isclose(max(r.top, r.left), min(per_side, 1.0), rel_tol=1e-9)


@settings(max_examples=300, deadline=None)
@given(
    w=st.integers(1, 13000),
    h=st.integers(1, 13000),
    aw=st.integers(1, 4000),
    ah=st.integers(1, 4000),
)
def test_finish_box_always_fits_inside_the_result(w, h, aw, ah):
    left, top, right, bottom = finish_box(w, h, (aw, ah))
    assert 0 <= left < right <= w
    assert 0 <= top < bottom <= h
    # Never further than one pixel (plus the slack for exact aspect units) from the aspect.
    assert abs((right - left) * ah - (bottom - top) * aw) <= max(aw, ah)
