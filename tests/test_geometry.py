"""Projection, point → pixel mapping and sparse bicubic lookup (method §5), against hand-computed pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from i2pmae.geometry import (
    IMAGE_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    NUM_VIEWS,
    VIEW_PERMUTATIONS,
    bicubic_lookup,
    normalise_images,
    points_to_pixels,
    project,
)


def expected_view(splats: list[tuple[slice, slice, float]]) -> torch.Tensor:
    """A raw (pre-sigmoid) 224×224 view from (rows, cols, value) rectangles added together."""
    view = torch.zeros(IMAGE_SIZE, IMAGE_SIZE)
    for rows, cols, value in splats:
        view[rows, cols] += value
    return view


def test_project_two_points_by_hand():
    # view 1 rows ← x, cols ← y, depth ← z; ranges 221 (x) and 100 (y): grid = 221/221 = 1 exactly
    points = torch.tensor([[[0.0, 0.0, 0.5], [221.0, 100.0, -1.0]]])
    images, proj = project(points, sigmoid=False)
    # cells (0, 0) and (221, 100); splats + 1 span rows −1..3 / 220..224 and cols −1..3 / 99..103.
    # rows: ctr = (−1 + 224) // 2 = 111 -> off 0 (the longer axis); cols: ctr = (−1 + 103) // 2 = 51 -> off 60
    assert proj[0, 0].tolist() == [0.0, 0.0, 1.0, 0.0, 60.0]
    # cols shift to 59..63 and 159..163; row −1 clamps onto row 0 and row 224 onto row 223 (both doubled)
    expected = expected_view(
        [
            (slice(0, 1), slice(59, 64), 2 * 0.5),
            (slice(1, 4), slice(59, 64), 0.5),
            (slice(220, 223), slice(159, 164), -1.0),
            (slice(223, 224), slice(159, 164), 2 * -1.0),
        ]
    )
    torch.testing.assert_close(images[0, 0], expected, rtol=0, atol=0)
    sig, _ = project(points)
    torch.testing.assert_close(sig[0, 0], torch.sigmoid(expected), rtol=0, atol=0)
    assert (sig[0, 0][expected == 0] == 0.5).all()  # background is sigmoid(0)


def test_project_sums_coincident_splats():
    # cells (0, 0), (1, 1) and (221, 0): the first two 5×5 squares overlap on a 4×4 block
    points = torch.tensor([[[0.0, 0.0, 2.0], [1.0, 1.0, 3.0], [221.0, 0.0, 0.25], [221.0, 0.0, 0.25]]])
    images, proj = project(points, sigmoid=False)
    # cols: cells 0..1 -> splats −1..4, ctr = 1, off = 110; rows: off 0
    assert proj[0, 0, 3:].tolist() == [0.0, 110.0]
    expected = expected_view(
        [
            (slice(0, 1), slice(109, 114), 2.0),  # point 0: rows −1..3, cols 109..113; row −1 -> row 0
            (slice(0, 4), slice(109, 114), 2.0),
            (slice(0, 5), slice(110, 115), 3.0),  # point 1: rows 0..4, cols 110..114
            (slice(220, 223), slice(109, 114), 2 * 0.25),  # two coincident points: every splat doubled
            (slice(223, 224), slice(109, 114), 2 * 2 * 0.25),  # … and row 224 clamped onto 223
        ]
    )
    torch.testing.assert_close(images[0, 0], expected, rtol=0, atol=0)
    assert images[0, 0, 1, 110].item() == 5.0  # an overlap pixel holds the sum 2 + 3


def test_views_are_axis_permutations_and_batch_is_independent():
    torch.manual_seed(0)
    clouds = torch.rand(3, 200, 3) * torch.tensor([2.0, 1.0, 0.5]) - 0.3
    images, proj = project(clouds)
    for v, perm in enumerate(VIEW_PERMUTATIONS):
        # view v of the cloud is view 1 of the cloud with its axes permuted
        alone, alone_proj = project(clouds[:, :, list(perm)])
        torch.testing.assert_close(images[:, v], alone[:, 0], rtol=0, atol=0)
        torch.testing.assert_close(proj[:, v], alone_proj[:, 0], rtol=0, atol=0)
    single, _ = project(clouds[1:2])
    torch.testing.assert_close(images[1:2], single, rtol=0, atol=0)
    assert images.shape == (3, NUM_VIEWS, IMAGE_SIZE, IMAGE_SIZE) and images.dtype == torch.float32
    assert proj.shape == (3, NUM_VIEWS, 5) and proj.dtype == torch.float32


def test_translation_moves_no_pixel():
    # positive coordinates on a 1/64 lattice and whole shifts: every subtraction is exact in float32, and
    # no pixel's depth sum is 0 by cancellation
    torch.manual_seed(1)
    cloud = torch.randint(1, 128, (2, 300, 3)).float() / 64
    shift = torch.tensor([3.0, 2.0, 1.0])
    raw, proj = project(cloud, sigmoid=False)
    raw_t, proj_t = project(cloud + shift, sigmoid=False)
    torch.testing.assert_close(proj_t[..., 2:], proj[..., 2:], rtol=0, atol=0)  # grid and offsets
    occupied = raw != 0
    torch.testing.assert_close(raw_t != 0, occupied, rtol=0, atol=0)
    for v, perm in enumerate(VIEW_PERMUTATIONS):
        shifted_min = proj[:, v, :2] + shift[list(perm[:2])]
        torch.testing.assert_close(proj_t[:, v, :2], shifted_min, rtol=0, atol=0)
        # depth is the raw third coordinate: each pixel gains shift × (number of splats on it)
        count = (raw_t[:, v] - raw[:, v]) / shift[perm[2]]
        torch.testing.assert_close(count, count.round(), rtol=0, atol=1e-3)
        rows, cols = points_to_pixels(cloud, proj)
        rows_t, cols_t = points_to_pixels(cloud + shift, proj_t)
        assert torch.equal(rows, rows_t) and torch.equal(cols, cols_t)


def test_points_to_pixels_hits_the_centre_splat():
    points = torch.tensor([[[0.0, 0.0, 0.5], [221.0, 100.0, -1.0]]])
    _, proj = project(points)
    rows, cols = points_to_pixels(points, proj)
    assert rows[0, 0].tolist() == [1, 222] and cols[0, 0].tolist() == [61, 161]  # see the hand test

    torch.manual_seed(2)
    cloud = torch.rand(2, 500, 3) + 0.1  # positive depths: an occupied pixel has a positive sum
    raw, proj = project(cloud, sigmoid=False)
    rows, cols = points_to_pixels(cloud, proj)
    assert rows.shape == (2, NUM_VIEWS, 500) and rows.dtype == torch.long
    assert (
        rows.min() >= 1 and rows.max() <= IMAGE_SIZE - 2 and cols.min() >= 1 and cols.max() <= IMAGE_SIZE - 2
    )
    # the whole 5×5 square around the centre pixel is painted
    for dr in range(-2, 3):
        for dc in range(-2, 3):
            r = (rows + dr).clamp(0, IMAGE_SIZE - 1)
            c = (cols + dc).clamp(0, IMAGE_SIZE - 1)
            hit = raw.flatten(2).gather(2, r * IMAGE_SIZE + c)  # (B, V, n)
            assert (hit > 0).all()


def test_points_to_pixels_clamps_outside_points_to_the_border():
    cloud = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])
    _, proj = project(cloud)
    far = torch.tensor([[[-5.0, -5.0, -5.0], [5.0, 5.0, 5.0]]])
    rows, cols = points_to_pixels(far, proj)
    assert rows[0, :, 0].tolist() == [0, 0, 0] and cols[0, :, 0].tolist() == [0, 0, 0]
    assert rows[0, :, 1].tolist() == [223, 223, 223] and cols[0, :, 1].tolist() == [223, 223, 223]


def dense_lookup(maps: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    up = F.interpolate(maps, size=IMAGE_SIZE, mode="bicubic", align_corners=False)  # (B, C, 224, 224)
    flat = up.flatten(2).transpose(1, 2)  # (B, 224², C)
    return flat.gather(1, (rows * IMAGE_SIZE + cols)[..., None].expand(-1, -1, maps.shape[1]))


def test_bicubic_lookup_equals_dense_upsampling_everywhere():
    torch.manual_seed(3)
    maps = torch.randn(2, 5, 14, 14)
    r, c = torch.meshgrid(torch.arange(IMAGE_SIZE), torch.arange(IMAGE_SIZE), indexing="ij")
    rows = r.reshape(1, -1).expand(2, -1)  # every pixel, borders included
    cols = c.reshape(1, -1).expand(2, -1)
    sparse = bicubic_lookup(maps, rows, cols)
    assert sparse.shape == (2, IMAGE_SIZE * IMAGE_SIZE, 5) and sparse.dtype == torch.float32
    torch.testing.assert_close(sparse, dense_lookup(maps, rows, cols), rtol=0, atol=1e-5)


def test_bicubic_lookup_non_square_maps_random_pixels_and_half_precision():
    torch.manual_seed(4)
    maps = torch.randn(3, 7, 9, 11)
    rows = torch.randint(0, IMAGE_SIZE, (3, 400))
    cols = torch.randint(0, IMAGE_SIZE, (3, 400))
    rows[:, :4] = torch.tensor([0, 0, 223, 223])
    cols[:, :4] = torch.tensor([0, 223, 0, 223])
    torch.testing.assert_close(
        bicubic_lookup(maps, rows, cols), dense_lookup(maps, rows, cols), rtol=0, atol=1e-5
    )
    half = maps.half()
    out = bicubic_lookup(half, rows, cols)
    assert out.dtype == torch.float32  # fp16 stores are read in fp32
    torch.testing.assert_close(out, dense_lookup(half.float(), rows, cols), rtol=0, atol=1e-5)


def test_normalise_images_copies_grey_to_three_channels():
    images = torch.full((2, NUM_VIEWS, 4, 4), 0.5)
    out = normalise_images(images)
    assert out.shape == (2, NUM_VIEWS, 3, 4, 4) and out.dtype == torch.float32
    for ch in range(3):
        expected = (0.5 - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch]
        torch.testing.assert_close(out[:, :, ch], torch.full((2, NUM_VIEWS, 4, 4), expected))


def test_bicubic_lookup_ignores_an_enclosing_autocast():
    torch.manual_seed(5)
    maps = torch.randn(2, 4, 14, 14)
    rows = torch.randint(0, IMAGE_SIZE, (2, 100))
    cols = torch.randint(0, IMAGE_SIZE, (2, 100))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = bicubic_lookup(maps, rows, cols)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, dense_lookup(maps, rows, cols), rtol=0, atol=1e-5)
