"""Plain-PyTorch point ops against naive references on tiny inputs."""

from __future__ import annotations

import pytest
import torch

from i2pmae.ops import (
    chamfer_l2,
    farthest_point_sample,
    gather_points,
    knn,
    square_distance,
    three_nn_interpolate,
)


def naive_fps(pts: torch.Tensor, n: int) -> list[int]:
    """Textbook FPS on one (N, 3) cloud, starting at index 0, first index on ties."""
    chosen = [0]
    dmin = [float("inf")] * len(pts)
    for _ in range(n - 1):
        last = pts[chosen[-1]]
        for j in range(len(pts)):
            dmin[j] = min(dmin[j], float(((pts[j] - last) ** 2).sum()))
        best = max(range(len(pts)), key=lambda j: (dmin[j], -j))
        chosen.append(best)
    return chosen


def test_fps_starts_at_zero_and_matches_naive():
    g = torch.Generator().manual_seed(0)
    xyz = torch.rand(3, 40, 3, generator=g, dtype=torch.float64)
    idx = farthest_point_sample(xyz, 12)
    assert idx.shape == (3, 12) and idx.dtype == torch.long
    assert (idx[:, 0] == 0).all()
    for b in range(3):
        assert idx[b].tolist() == naive_fps(xyz[b], 12)
        assert len(set(idx[b].tolist())) == 12


def test_fps_all_points_is_a_permutation_and_rejects_too_many():
    xyz = torch.rand(2, 16, 3)
    idx = farthest_point_sample(xyz, 16)
    assert sorted(idx[1].tolist()) == list(range(16))
    with pytest.raises(ValueError, match="n=17"):
        farthest_point_sample(xyz, 17)


def test_square_distance_exact_and_self_zero():
    a = torch.rand(2, 5, 3)
    d2 = square_distance(a, a)
    ref = ((a[:, :, None] - a[:, None]) ** 2).sum(-1)
    torch.testing.assert_close(d2, ref)
    assert (torch.diagonal(d2, dim1=1, dim2=2) == 0).all()


def test_knn_slot0_is_centre_and_sorted():
    g = torch.Generator().manual_seed(1)
    xyz = torch.rand(2, 50, 3, generator=g)
    centers_idx = farthest_point_sample(xyz, 10)
    centers = gather_points(xyz, centers_idx)
    idx = knn(centers, xyz, 6)
    assert idx.shape == (2, 10, 6)
    assert (idx[:, :, 0] == centers_idx).all()
    d = ((gather_points(xyz, idx) - centers[:, :, None]) ** 2).sum(-1)  # (B, G, K)
    assert (d[..., 1:] >= d[..., :-1]).all()
    brute = torch.cdist(centers, xyz).argsort(dim=-1)[..., :6]
    assert torch.equal(idx.sort(-1).values, brute.sort(-1).values)


def test_gather_points_shapes_and_values():
    x = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    idx = torch.tensor([[[0, 4], [1, 1]], [[3, 2], [0, 0]]])  # (B, 2, 2)
    out = gather_points(x, idx)
    assert out.shape == (2, 2, 2, 3)
    assert torch.equal(out[1, 0, 0], x[1, 3])
    out2 = gather_points(x[..., 0], idx)
    assert out2.shape == (2, 2, 2) and out2[0, 0, 1] == x[0, 4, 0]


def test_chamfer_matches_hand_computation():
    a = torch.tensor([[[0.0, 0, 0], [1, 0, 0]]])  # (1, 2, 3)
    b = torch.tensor([[[0.0, 0, 0], [0, 2, 0], [3, 0, 0]]])  # (1, 3, 3)
    # a->b squared mins: 0, 1  -> mean 0.5; b->a squared mins: 0, 4, 4 -> mean 8/3
    torch.testing.assert_close(chamfer_l2(a, b), torch.tensor(0.5 + 8 / 3))
    # two instances are separate: means over L·n and L·m points
    a2 = torch.cat([a, a + 10]), torch.cat([b, b + 10])
    torch.testing.assert_close(chamfer_l2(*a2), torch.tensor(0.5 + 8 / 3))
    assert chamfer_l2(torch.zeros(0, 8, 3), torch.zeros(0, 8, 3)) == 0


def test_chamfer_gradient_flows():
    a = torch.rand(4, 8, 3, requires_grad=True)
    chamfer_l2(a, torch.rand(4, 8, 3)).backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()


def test_three_nn_interpolate():
    ref = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5]]])  # (1, 4, 3)
    feats = torch.tensor([[[1.0], [2.0], [3.0], [100.0]]])  # (1, 4, 1)
    query = torch.tensor([[[0.5, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    out = three_nn_interpolate(query, ref, feats)
    # query 0: d² = 0.25, 0.25, 1.25 to refs 0, 1, 2
    w = torch.tensor([1 / (0.25 + 1e-8), 1 / (0.25 + 1e-8), 1 / (1.25 + 1e-8)])
    torch.testing.assert_close(out[0, 0, 0], (w * torch.tensor([1.0, 2.0, 3.0])).sum() / w.sum())
    torch.testing.assert_close(
        out[0, 1, 0], torch.tensor(2.0), atol=1e-6, rtol=0
    )  # on a ref point: copies it
    const = three_nn_interpolate(torch.rand(2, 7, 3), torch.rand(2, 5, 3), torch.full((2, 5, 4), 3.5))
    torch.testing.assert_close(const, torch.full((2, 7, 4), 3.5))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    xyz = torch.rand(4, 300, 3)
    idx = farthest_point_sample(xyz, 64)
    assert torch.equal(farthest_point_sample(xyz.cuda(), 64).cpu(), idx)
    centers = gather_points(xyz, idx)
    assert torch.equal(knn(centers.cuda(), xyz.cuda(), 8).cpu()[..., 0], knn(centers, xyz, 8)[..., 0])
    a, b = torch.rand(5, 8, 3), torch.rand(5, 8, 3)
    torch.testing.assert_close(chamfer_l2(a.cuda(), b.cuda()).cpu(), chamfer_l2(a, b))
