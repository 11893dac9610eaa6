"""Part segmentation (method §14): metrics against hand-computed cases, the model's shape and size, the
encoder it loads, the reference's double step, the draws and the schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from i2pmae.model import I2PMAE, I2PMAEConfig
from i2pmae.partseg import PartSegConfig, PartSegmenter
from i2pmae.partseg_metrics import predict_parts, score, shape_iou
from i2pmae.partseg_step import PartSegTrainConfig, draw_points, partseg_step
from i2pmae.schedule import param_groups
from tests.builders import TINY_ENCODER

PARTS = [[0, 1], [2, 3, 4]]  # category 0 owns parts 0-1, category 1 parts 2-4
TINY = dict(
    num_groups=(32, 16, 8), group_sizes=(8, 4, 4), encoder_dims=(24, 48, 96), encoder_depths=(1, 1, 1),
    num_heads=2, propagation=(32, 16), head=(32, 16, 8),
)  # fmt: skip


def test_part_iou_counts_a_part_absent_from_both_as_one():
    target = np.array([0, 0, 0, 0])
    assert shape_iou(np.array([0, 0, 0, 0]), target, [0, 1]) == 1.0  # part 1 absent from both: IoU 1
    assert shape_iou(np.array([0, 0, 1, 1]), target, [0, 1]) == pytest.approx((2 / 4 + 0.0) / 2)


def test_prediction_ignores_the_logits_of_other_categories():
    logits = np.zeros((1, 3, 5))
    logits[0, :, 4] = 10.0  # part 4 belongs to category 1: never chosen for a shape of category 0
    logits[0, :, 1] = 1.0
    assert predict_parts(logits, np.array([0]), PARTS).tolist() == [[1, 1, 1]]
    assert predict_parts(logits, np.array([1]), PARTS).tolist() == [[4, 4, 4]]


def test_instance_and_class_miou_by_hand():
    # category 0: two shapes (IoU 1 and 0.5); category 1: one shape (IoU 1/3) -> a category with one shape
    pred = [np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0]), np.array([2, 2, 2])]
    target = [np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]), np.array([2, 3, 4])]
    s = score(pred, target, [0, 0, 1], PARTS, ["mug", "lamp"])
    shape_ious = [1.0, (2 / 4 + 0.0) / 2, (1 / 3 + 0 + 0) / 3]
    assert s.shape_ious == pytest.approx(shape_ious)
    assert s.instance_miou == pytest.approx(np.mean(shape_ious))
    assert s.class_miou == pytest.approx(np.mean([np.mean(shape_ious[:2]), shape_ious[2]]))
    assert s.per_category == pytest.approx({"mug": 0.625, "lamp": 1 / 9})
    assert s.accuracy == pytest.approx((4 + 2 + 1) / 11)
    with pytest.raises(ValueError):
        score([np.array([0, 1])], [np.array([0])], [0], PARTS)


def _reference_parameter_count(cfg: PartSegConfig, encoder: int) -> int:
    """The reference model's size from its layer shapes: encoder + 3 propagation MLPs (conv + BN each) +
    label conv (no bias) + BN + the head (convs1-3 + BN, convs4)."""

    def conv_bn(c_in, c_out):
        return c_in * c_out + c_out + 2 * c_out

    prop = sum(conv_bn(d + 3, 1536) + conv_bn(1536, 1024) for d in cfg.encoder_dims)
    label = 16 * 64 + 2 * 64
    head = conv_bn(6208, 1024) + conv_bn(1024, 512) + conv_bn(512, 256) + 256 * 50 + 50
    return encoder + prop + label + head


def test_the_paper_configuration_has_the_reference_layers():
    with torch.device("meta"):
        model = PartSegmenter(PartSegConfig())
        encoder = I2PMAE(I2PMAEConfig()).h_encoder
    n_encoder = sum(p.numel() for p in encoder.parameters())  # with encoder_norms, as pre-trained
    assert sum(p.numel() for p in model.h_encoder.parameters()) == n_encoder
    assert sum(p.numel() for p in model.parameters()) == _reference_parameter_count(
        PartSegConfig(), n_encoder
    )
    assert model.convs1.in_channels == 6208 and model.convs4.out_channels == 50


def test_forward_gives_log_probabilities_per_point():
    torch.manual_seed(0)
    model = PartSegmenter(PartSegConfig(n_categories=2, n_parts=5, **TINY)).eval()
    out = model(torch.randn(3, 128, 3), torch.tensor([0, 1, 1]))
    assert out.shape == (3, 128, 5)
    assert torch.allclose(out.exp().sum(-1), torch.ones(3, 128), atol=1e-5)


def test_loads_every_encoder_key_of_a_pretraining_state_dict_and_refuses_foreign_ones():
    torch.manual_seed(1)
    pre = I2PMAE(I2PMAEConfig(**TINY_ENCODER))
    arch = {k: TINY_ENCODER[k] for k in ("num_groups", "group_sizes", "encoder_dims", "num_heads")}
    model = PartSegmenter(PartSegConfig(n_categories=2, n_parts=5, **{**TINY, **arch}))
    loaded = model.load_pretrained_encoder({f"module.{k}": v for k, v in pre.state_dict().items()})
    assert any("encoder_norms" in k for k in loaded)
    for k, v in pre.h_encoder.state_dict().items():
        assert torch.equal(model.h_encoder.state_dict()[k], v), k
    with pytest.raises(KeyError, match="encoder keys"):
        model.load_pretrained_encoder({k: v for k, v in pre.state_dict().items() if "encoder_norms" not in k})


def _one_step(single: bool):
    torch.manual_seed(0)
    model = PartSegmenter(PartSegConfig(n_categories=2, n_parts=5, **TINY)).train()
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    xyz, target = draw_points(
        torch.randn(4, 200, 3), torch.randint(0, 5, (4, 200)), torch.full((4,), 200), 64, g
    )
    cfg = PartSegTrainConfig(single_step=single)
    _, _, stepped = partseg_step(model, opt, xyz, torch.tensor([0, 1, 0, 1]), target, cfg)
    assert stepped
    return model, opt


def test_the_reference_takes_two_optimiser_steps_per_batch_and_the_fix_one():
    (double, opt2), (single, opt1) = _one_step(False), _one_step(True)
    steps = {int(s["step"]) for s in opt2.state.values()}, {int(s["step"]) for s in opt1.state.values()}
    assert steps == ({2}, {1})
    w2, w1 = double.convs4.weight, single.convs4.weight
    assert not torch.allclose(w2, w1)


def test_draws_come_only_from_a_shapes_own_points():
    points = torch.full((2, 10, 3), float("nan"))
    points[0, :3], points[1, :7] = 1.0, 2.0  # rows past count are padding
    parts = torch.full((2, 10), -1)
    parts[0, :3], parts[1, :7] = 0, 3
    xyz, target = draw_points(points, parts, torch.tensor([3, 7]), 500, torch.Generator().manual_seed(0))
    assert torch.isfinite(xyz).all() and (target >= 0).all()
    assert set(target[0].tolist()) == {0} and set(target[1].tolist()) == {3}


def test_an_official_pretrain_file_loads_every_encoder_tensor(tmp_path):
    from pipeline.evaluate.partseg import model_config
    from pipeline.storage.checkpoints import load_encoder

    torch.manual_seed(2)  # widths a multiple of the 6 heads an official file is read with
    pre = I2PMAE(
        I2PMAEConfig(
            **{**TINY_ENCODER, "encoder_dims": (24, 48, 96), "decoder_dims": (96, 48), "num_heads": 6}
        )
    )
    path = tmp_path / "pre-train.pth"
    torch.save({"base_model": {f"module.{k}": v for k, v in pre.state_dict().items()}, "epoch": 3}, path)
    ck = load_encoder(path)
    assert ck.origin == "official"
    model = PartSegmenter(model_config(ck.config, 2, 5))
    model.load_pretrained_encoder(ck.encoder_state)
    for k, v in pre.h_encoder.state_dict().items():
        assert torch.equal(model.h_encoder.state_dict()[k], v), k
    from dataclasses import replace

    assert model_config(
        replace(ck.config, fps_origin_rule=True), 2, 5
    ).fps_origin_rule  # the encoder's FPS rule


@pytest.mark.parametrize("how, lengths", [("resample", [40, 40]), ("fps", [40, 33]), ("all", [50, 33])])
def test_test_points_resample_take_fps_or_all_of_a_shapes_points(how, lengths):
    from i2pmae.partseg_step import predict

    torch.manual_seed(0)
    model = PartSegmenter(PartSegConfig(n_categories=2, n_parts=5, **{**TINY, "num_groups": (16, 8, 4)}))
    points, parts = torch.randn(2, 50, 3), torch.randint(0, 5, (2, 50))
    cfg = PartSegTrainConfig(points=40, test_points=how)
    g = torch.Generator().manual_seed(0)
    logp, target = predict(model, points, parts, torch.tensor([50, 33]), torch.tensor([0, 1]), cfg, g, "cpu")
    assert [len(t) for t in target] == lengths and [p.shape for p in logp] == [(n, 5) for n in lengths]
    if how == "all":
        assert torch.equal(torch.from_numpy(target[1]), parts[1, :33])


def test_an_interrupted_partseg_resumes_after_its_last_epoch_to_the_same_numbers(tmp_path):
    from pipeline.evaluate.partseg_loop import PartsegData, fit

    g = torch.Generator().manual_seed(3)
    data = PartsegData(
        torch.randn(6, 80, 3, generator=g), torch.randint(0, 5, (6, 80), generator=g),
        torch.tensor([80, 70, 60, 80, 75, 66]), torch.tensor([0, 1, 0, 1, 0, 1]),
    )  # fmt: skip
    cfg = PartSegTrainConfig(epochs=3, batch_size=3, test_batch_size=3, points=48, warmup_epochs=1)
    small = PartSegConfig(n_categories=2, n_parts=5, **{**TINY, "num_groups": (16, 8, 4)})

    def model():
        torch.manual_seed(0)
        return PartSegmenter(small)

    whole = fit(model(), data, data, cfg, PARTS, ["a", "b"])

    def stop_after_epoch_1(h):
        if h.epoch == 1:
            raise KeyboardInterrupt

    resume = tmp_path / "resume.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(model(), data, data, cfg, PARTS, ["a", "b"], on_epoch=stop_after_epoch_1, resume=resume)
    resumed_model = model()
    resumed = fit(resumed_model, data, data, cfg, PARTS, ["a", "b"], resume=resume)
    strip = [{k: v for k, v in vars(h).items() if k != "seconds"} for h in resumed.history]
    assert strip == [{k: v for k, v in vars(h).items() if k != "seconds"} for h in whole.history]
    assert len(resumed.history) == 3 and resumed.steps == whole.steps == 6
