"""I2P-MAE model: official names and sizes, tokenizer, masking rules, forward/backward, eval path."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from i2pmae.classifier import ClassifierConfig, PointClassifier
from i2pmae.encoder import TokenEmbed, pad_visible, propagate_mask, unpad_visible
from i2pmae.layers import Attention, apply_pointwise
from i2pmae.masking import guided_mask, random_mask
from i2pmae.model import I2PMAE, I2PMAEConfig
from i2pmae.ops import chamfer_l2

# Names and shapes of the official models' state dicts (see its "about"); a copy kept with the tests.
KEYS = Path(__file__).resolve().parent / "data" / "official_checkpoint_keys.json"
SMALL = I2PMAEConfig(
    num_groups=(48, 24, 16),
    group_sizes=(8, 4, 4),
    encoder_dims=(24, 48, 96),
    encoder_depths=(1, 2, 1),
    num_heads=2,
    decoder_dims=(96, 48),
    feat_dim_2d=8,
)
B, N = 3, 128


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def cloud(b: int = B, n: int = N, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xyz = torch.randn(b, n, 3, generator=g)
    return xyz / xyz.norm(dim=-1).amax(dim=1)[:, None, None]


@pytest.fixture(scope="module")
def official():
    return json.loads(KEYS.read_text())


@pytest.fixture(scope="module")
def default_model():
    return I2PMAE()


@pytest.fixture
def small_model():
    torch.manual_seed(0)
    return I2PMAE(SMALL)


def fake_saliency(idx: torch.Tensor) -> torch.Tensor:
    return torch.rand(idx.shape[0], 3, idx.shape[1]) * 0.01  # (B, V, G_top)


def fake_target(cfg: I2PMAEConfig):
    def target_fn(batch_idx: torch.Tensor, member_idx: torch.Tensor) -> torch.Tensor:
        assert batch_idx.shape[0] == member_idx.shape[0]
        return torch.randn(*member_idx.shape, cfg.num_views * cfg.feat_dim_2d)

    return target_fn


# ------------------------------------------------------------------ official sizes and names
def test_default_parameter_count_and_official_state_dict(default_model, official):
    assert n_params(default_model) == 17_622_808 == official["pretrain"]["n_params"]
    assert shapes(default_model) == official["pretrain"]["state_dict"]
    assert list(default_model.state_dict()) == list(official["pretrain"]["state_dict"])  # same order too


def test_3d_only_model_has_no_2d_head():
    with torch.device("meta"):  # sizes only: skip the weight initialisation cost
        model = I2PMAE(I2PMAEConfig(targets="3d"))
    assert model.rec_head_2d is None
    assert n_params(model) == 17_622_808 - 2_371_584


@pytest.mark.parametrize(
    "name,cfg,count",
    [
        ("modelnet40", ClassifierConfig.modelnet40(), 12_830_056),
        ("scanobjectnn", ClassifierConfig.scanobjectnn("pb-t50-rs"), 12_921_935),
    ],
)
def test_classifier_counts_and_names(official, name, cfg, count):
    with torch.device("meta"):
        model = PointClassifier(cfg)
    assert n_params(model) == count == official[name]["n_params"]
    assert shapes(model) == official[name]["state_dict"]


def test_classifier_loads_pretrained_encoder_with_module_prefix(default_model):
    clf = PointClassifier(ClassifierConfig.modelnet40(num_classes=5))  # few-shot: 5-way head
    assert clf.cls_head_finetune[-1].out_features == 5
    sd = {f"module.{k}": v for k, v in default_model.state_dict().items()}
    loaded = clf.load_pretrained_encoder(sd)
    assert len(loaded) == len(clf.h_encoder.state_dict())
    w = "encoder_blocks.2.blocks.4.mlp.fc2.weight"
    assert torch.equal(clf.h_encoder.state_dict()[w], default_model.h_encoder.state_dict()[w])
    with pytest.raises(KeyError, match="lacks"):
        clf.load_pretrained_encoder({"mask_token": default_model.mask_token})


def test_initialisation_and_drop_path(default_model):
    enc, m = default_model.h_encoder, default_model
    fc = enc.encoder_blocks[2].blocks[0].mlp.fc1
    assert abs(fc.weight.std().item() - 0.02) < 0.002 and (fc.bias == 0).all()
    conv = enc.token_embed[0].second_conv[0]
    assert abs(conv.weight.std().item() - 0.02) < 0.002 and (conv.bias == 0).all()
    dec_fc = m.h_decoder[0].blocks[0].mlp.fc1
    bound = (6 / (dec_fc.in_features + dec_fc.out_features)) ** 0.5
    assert dec_fc.weight.abs().max() <= bound and dec_fc.weight.std() > 0.5 * bound / 3**0.5
    assert abs(m.mask_token.std().item() - 0.02) < 0.006
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for s in enc.encoder_blocks for b in s.blocks]
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.1, 15))
    dec_rates = [getattr(s.blocks[0].drop_path, "drop_prob", 0.0) for s in m.h_decoder]
    assert dec_rates == pytest.approx([0.0, 0.1])


# ------------------------------------------------------------------ layers
def test_pointwise_equals_conv1d_path():
    torch.manual_seed(0)
    seq = TokenEmbed(96, 192).first_conv.train()
    x = torch.randn(6, 5, 96)  # (M, K, C)
    ref = seq(x.transpose(1, 2)).transpose(1, 2)  # the official (M, C, K) layout
    torch.testing.assert_close(apply_pointwise(seq, x), ref, atol=1e-5, rtol=1e-5)


def test_attention_ignores_padded_keys():
    torch.manual_seed(0)
    attn = Attention(16, 2).eval()
    x = torch.randn(1, 6, 16)
    valid = torch.tensor([[True] * 4 + [False] * 2])
    mask = ~(valid[:, :, None] & valid[:, None, :])
    torch.testing.assert_close(attn(x, mask)[:, :4], attn(x[:, :4]), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ tokenizer
def test_groups_shapes_and_indices(small_model):
    xyz = cloud()
    g = small_model.group(xyz)
    for s, (G, K) in enumerate(zip(SMALL.num_groups, SMALL.group_sizes, strict=True)):
        assert g.centers[s].shape == (B, G, 3)
        assert g.neighborhoods[s].shape == g.neighborhoods_ori[s].shape == (B, G, K, 3)
        assert g.knn_idx[s].shape == g.member_point_idx[s].shape == (B, G, K)
        torch.testing.assert_close(g.neighborhoods[s], g.neighborhoods_ori[s] - g.centers[s][:, :, None])
        assert (g.neighborhoods[s][:, :, 0] == 0).all()  # slot 0 is the centre
        bidx = torch.arange(B)[:, None]
        torch.testing.assert_close(xyz[bidx, g.center_point_idx[s]], g.centers[s])
        torch.testing.assert_close(xyz[bidx[..., None], g.member_point_idx[s]], g.neighborhoods_ori[s])
    assert (g.top_center_point_idx[:, 0] == 0).all()  # FPS starts at index 0 at every scale


# ------------------------------------------------------------------ masking
def test_guided_mask_counts():
    sal = torch.rand(5, 3, 64)
    mask = guided_mask(sal, 0.8, torch.Generator().manual_seed(0))
    assert mask.shape == (5, 64) and mask.dtype == torch.bool
    assert (mask.sum(1) == int(0.8 * 64)).all()  # 51 masked, 13 visible


def test_guided_mask_temperature_one():
    gen = torch.Generator().manual_seed(0)
    draws = 3000
    sal = torch.zeros(draws, 3, 64)
    sal[:, :, 5] = 3.0  # one strongly salient token: e^3 ≈ 20× the weight of the others
    sal[:, :, 9] = 0.1  # values of attention-probability size barely matter (method §4.6)
    keep = (~guided_mask(sal, 0.8, gen)).float().mean(0)
    assert keep[5] > 0.9  # salient tokens tend to stay visible
    others = torch.cat([keep[:5], keep[6:]])
    assert abs(others.mean().item() - 12 / 63) < 0.02
    assert abs(keep[9].item() / others.mean().item() - 1.0) < 0.25  # near uniform, not sharpened
    a = guided_mask(sal[:4], 0.8, torch.Generator().manual_seed(7))
    b = guided_mask(sal[:4] + 5.0, 0.8, torch.Generator().manual_seed(7))  # softmax: shift invariant
    assert torch.equal(a, b)
    c = guided_mask(sal[:4].mean(1), 0.8, torch.Generator().manual_seed(7))  # (B, G) already combined
    assert torch.equal(a, c)


def test_random_mask_counts_and_seed():
    m1 = random_mask(4, 64, 0.8, generator=torch.Generator().manual_seed(3))
    m2 = random_mask(4, 64, 0.8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(m1, m2) and (m1.sum(1) == 51).all()
    assert not torch.equal(m1[0], m1[1])


def brute_propagate(mask_up, knn_idx, num_lower, quirk):
    Bb, G, _ = knn_idx.shape
    vis = torch.zeros(Bb, num_lower, dtype=torch.bool)
    for b in range(Bb):
        for i in range(G):
            if not mask_up[b, i]:
                vis[b, knn_idx[b, i]] = True
    if quirk and mask_up.any():
        vis[0, 0] = True
    return ~vis


@pytest.mark.parametrize("quirk", [True, False])
def test_propagate_mask_rule(quirk):
    g = torch.Generator().manual_seed(0)
    knn_idx = torch.randint(1, 20, (3, 8, 4), generator=g)  # nobody owns lower token 0
    mask_up = torch.rand(3, 8, generator=g) > 0.5
    got = propagate_mask(mask_up, knn_idx, 20, index0_quirk=quirk)
    assert torch.equal(got, brute_propagate(mask_up, knn_idx, 20, quirk))
    assert got[0, 0] == (not quirk)
    assert got[1, 0] and got[2, 0]  # the quirk only touches sample 0
    assert propagate_mask(torch.zeros(3, 8, dtype=torch.bool), knn_idx, 20)[0, 0]  # nothing masked: no quirk


def test_pad_unpad_roundtrip():
    x = torch.randn(3, 10, 4)
    centers = torch.randn(3, 10, 3)
    mask = torch.rand(3, 10) > 0.4
    mask[0] = True
    mask[0, 7] = False  # one visible token only
    x_pad, c_pad, valid, order = pad_visible(x, centers, mask)
    assert x_pad.shape[1] == (~mask).sum(1).max() and (valid.sum(1) == (~mask).sum(1)).all()
    assert (x_pad[~valid] == 0).all() and (c_pad[~valid] == 0).all()
    torch.testing.assert_close(x_pad[valid], x[~mask])  # row-major order of boolean indexing
    back = unpad_visible(x_pad, order, mask, torch.full_like(x, -1.0))
    torch.testing.assert_close(back, torch.where(mask[..., None], -1.0, x))


# ------------------------------------------------------------------ full model
def test_forward_shapes_masks_and_gradients(small_model):
    xyz = cloud()
    out = small_model(xyz, saliency_fn=fake_saliency, target_fn=fake_target(SMALL))
    g, enc, dec = out.groups, out.encoded, out.decoded
    m0, m1, m2 = enc.masks
    assert (m2.sum(1) == int(0.8 * 16)).all()
    for s in (2, 1):  # §3.3 rule, index-0 quirk included
        assert torch.equal(
            enc.masks[s - 1], brute_propagate(enc.masks[s], g.knn_idx[s], g.centers[s - 1].shape[1], True)
        )
    for s, C in enumerate(SMALL.encoder_dims):
        assert enc.tokens[s].shape == (B, int((~enc.masks[s]).sum(1).max()), C)
        assert torch.equal(enc.valid[s].sum(1), (~enc.masks[s]).sum(1))
    L_m, L_v = int(m1.sum()), int((~m1).sum())
    assert L_m + L_v == B * SMALL.num_groups[1]
    assert dec.tokens.shape == (B, SMALL.num_groups[1], SMALL.decoder_dims[-1])
    assert dec.pred_3d.shape == (L_m, 4, 3)
    assert dec.pred_2d.shape == (L_v, 4, 3 * SMALL.feat_dim_2d)
    assert all(torch.isfinite(t).all() for t in (out.loss, dec.pred_3d, dec.pred_2d, *enc.tokens))
    out.loss.backward()
    no_grad = sorted(n for n, p in small_model.named_parameters() if p.grad is None)
    # The LN-ed scale-0 tokens feed nothing in the official model either: encoder_norms.0 never trains.
    assert no_grad == ["h_encoder.encoder_norms.0.bias", "h_encoder.encoder_norms.0.weight"]
    assert all(torch.isfinite(p.grad).all() for p in small_model.parameters() if p.grad is not None)


def test_forward_loss_and_targets(small_model):
    xyz = cloud()
    g = small_model.group(xyz)
    mask = small_model.random_mask(B, generator=torch.Generator().manual_seed(0))
    enc = small_model.forward_encoder(g, mask)
    dec = small_model.forward_decoder(enc, g)
    t3 = small_model.target_3d(g, enc.masks)
    m1 = enc.masks[1]
    torch.testing.assert_close(t3, g.neighborhoods[1][m1])
    bidx, pidx = small_model.visible_members(g, enc.masks)
    torch.testing.assert_close(xyz[bidx[:, None], pidx], g.neighborhoods_ori[1][~m1])  # 2D lookup points
    t2 = torch.randn_like(dec.pred_2d)
    loss, l3, l2 = small_model.forward_loss(dec.pred_3d, t3, dec.pred_2d, t2)
    torch.testing.assert_close(l3, chamfer_l2(dec.pred_3d, t3))
    torch.testing.assert_close(l2, ((dec.pred_2d - t2) ** 2).mean())
    torch.testing.assert_close(loss, l3 + l2)
    with pytest.raises(ValueError, match="target_2d"):
        small_model.forward_loss(dec.pred_3d, t3, dec.pred_2d, None)


def test_3d_only_forward():
    model = I2PMAE(replace(SMALL, targets="3d", masking="random"))
    out = model(cloud())
    assert out.loss_2d is None and out.decoded.pred_2d is None
    out.loss.backward()
    assert torch.isfinite(out.loss)


def test_padding_does_not_leak_between_samples(small_model):
    """Each sample's visible tokens encode the same alone as inside a padded batch (eval mode)."""
    model = I2PMAE(replace(SMALL, index0_quirk=False)).eval()
    xyz = cloud()
    g = model.group(xyz)
    mask = random_mask(B, 16, 0.8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        enc = model.forward_encoder(g, mask)
        for b in range(B):
            one = model.forward_encoder(model.group(xyz[b : b + 1]), mask[b : b + 1])
            for s in range(3):
                n = int(one.valid[s].sum())
                torch.testing.assert_close(enc.tokens[s][b, :n], one.tokens[s][0, :n], atol=1e-4, rtol=1e-4)


def test_eval_path(small_model):
    small_model.train()
    xyz = cloud()
    f1 = small_model.global_feature(xyz)
    f2 = small_model.global_feature(xyz, pooling="mean+max")
    assert f1.shape == f2.shape == (B, SMALL.encoder_dims[-1]) and small_model.training
    torch.testing.assert_close(f1, small_model.global_feature(xyz))  # deterministic in eval mode
    assert torch.isfinite(f2).all() and not torch.equal(f1, f2)


def test_classifier_forward_backward():
    cfg = ClassifierConfig.scanobjectnn("obj-bg")
    cfg = ClassifierConfig(
        num_classes=7,
        pooling="concat",
        num_groups=(48, 24, 16),
        group_sizes=(8, 4, 4),
        local_radius=cfg.local_radius,
        encoder_dims=(24, 48, 96),
        encoder_depths=(1, 1, 1),
        num_heads=2,
    )
    clf = PointClassifier(cfg)
    logits = clf(cloud())
    assert logits.shape == (B, 7) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in clf.parameters())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_forward_on_cuda():
    model = I2PMAE(SMALL).cuda()
    gen = torch.Generator(device="cuda").manual_seed(0)
    sal = lambda idx: torch.rand(idx.shape[0], 3, idx.shape[1], device="cuda")  # noqa: E731
    tgt = lambda b, p: torch.randn(*p.shape, 3 * SMALL.feat_dim_2d, device="cuda")  # noqa: E731
    out = model(cloud().cuda(), saliency_fn=sal, target_fn=tgt, generator=gen)
    out.loss.backward()
    assert torch.isfinite(out.loss) and (out.encoded.masks[2].sum(1) == 12).all()
