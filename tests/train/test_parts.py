"""Unit tests of the training pieces: model shapes, loss, augmentation, calibration, metrics, preprocessing choice."""
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
from pytorch_msssim import ssim

from insightad_edge.preprocess import prepare_work
from insightad_train.augment import PRESETS, augment
from insightad_train.calibrate import quantile_threshold, youden_threshold
from insightad_train.loss import HybridLoss
from insightad_train.metrics import auroc, precision_recall_f1
from insightad_train.model import BottleneckAutoencoder, SeedAutoencoder, build_model
from insightad_train.preprocessing import RANGE_FLOOR, derive_preprocess, input_shape, where_parts_lie
from synthetic import banded_part_image, part_image


@pytest.mark.parametrize("arch", ["seed", "bottleneck"])
def test_models_reconstruct_the_input_shape(arch):
    model = build_model(arch, (48, 96)).eval()
    x = torch.rand(2, 1, 48, 96)
    y = model(x)
    assert y.shape == x.shape and 0.0 <= y.min().item() and y.max().item() <= 1.0


def test_seed_model_is_the_original_design():
    model = SeedAutoencoder()
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 256] and all(c.stride == (2, 2) for c in convs)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.encoder.modules()) == 4
    deconvs = [m for m in model.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [d.out_channels for d in deconvs] == [128, 64, 32, 1]
    assert isinstance(model.decoder[-1], torch.nn.Sigmoid)


def test_bottleneck_really_narrows():
    model = BottleneckAutoencoder((64, 64), latent=32)
    assert model.encoder(torch.rand(1, 1, 64, 64)).shape == (1, 32)


def test_build_model_refuses_bad_sizes():
    with pytest.raises(ValueError):
        build_model("seed", (50, 64))
    with pytest.raises(ValueError):
        build_model("vae", (64, 64))


def test_loss_matches_its_definition():
    torch.manual_seed(0)
    a, b = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    expected = 0.16 * torch.mean((a - b) ** 2) + 0.84 * (1 - ssim(a, b, data_range=1.0, win_size=11))
    assert float(HybridLoss(0.84)(a, b)) == pytest.approx(float(expected), rel=1e-6)
    assert float(HybridLoss(0.84)(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(HybridLoss(0.0)(a, b)) == pytest.approx(float(torch.mean((a - b) ** 2)), rel=1e-6)


def test_augmentation_is_reproducible_and_does_something(part):
    image = part.astype(np.float32) / 255
    one = augment(image, np.random.default_rng([3, 1]), PRESETS["seed"])
    two = augment(image, np.random.default_rng([3, 1]), PRESETS["seed"])
    other = augment(image, np.random.default_rng([3, 2]), PRESETS["seed"])
    np.testing.assert_array_equal(one, two)
    assert np.abs(one - other).mean() > 0.01 and np.abs(one - image).mean() > 0.01
    assert augment(image, np.random.default_rng(0), PRESETS["none"]) is image


def test_quantile_threshold():
    t = quantile_threshold(np.arange(101, dtype=float), 0.95)
    assert t.value == pytest.approx(95.0) and t.method == "quantile" and t.n_good == 101
    with pytest.raises(ValueError):
        quantile_threshold(np.array([]), 0.9)


def test_youden_threshold_separates_clean_scores_in_the_middle_of_the_gap():
    """Not just under the weakest validation defect (0.5), where a new one scoring 0.45, far above every good part,
    would pass."""
    t = youden_threshold(np.array([0.1, 0.2, 0.3]), np.array([0.5, 0.6]))
    assert t.value == pytest.approx(0.4) and t.method == "youden" and t.n_defect == 2
    overlapping = youden_threshold(np.array([0.1, 0.2, 0.35, 0.3]), np.array([0.32, 0.5, 0.6]))
    assert 0.3 < overlapping.value < 0.32  # J peaks flagging 0.32 and above: its gap is 0.30 to 0.32
    assert youden_threshold(np.array([0.1, 0.3]), np.array([0.1, 0.2])) is None  # no cut finds them: none (was inf)
    scores = np.array([0.1, 0.2, 0.3, 0.5, 0.6])
    assert ((scores > t.value) == np.array([0, 0, 0, 1, 1], bool)).all()


def test_auroc_and_f1():
    assert auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auroc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert auroc([0, 1], [0.5, 0.5]) == 0.5
    assert auroc([0, 0, 1, 1], [0.1, 0.3, 0.2, 0.4]) == 0.75
    m = precision_recall_f1([1, 1, 0, 0], [1, 0, 1, 0])
    assert m == {"precision": 0.5, "recall": 0.5, "f1": 0.5}


def test_preprocessing_is_chosen_from_the_images():
    rng = np.random.default_rng(0)
    objects = [part_image(rng, 128)[0].astype(np.float32) / 255 for _ in range(8)]
    spec, _ = derive_preprocess(objects, 64, (128, 128))
    assert spec.align == "center_rotate" and spec.foreground_dark
    assert spec.input_size[1] > spec.input_size[0]  # an elongated part gets a wide input
    assert spec.photometric_target == pytest.approx(200 / 255, abs=0.02)
    texture = [rng.uniform(0.3, 0.7, (128, 128)).astype(np.float32) for _ in range(8)]
    assert derive_preprocess(texture, 64, (128, 128))[0].align == "none"


def test_a_bright_piece_of_a_dimmer_part_is_not_aligned_on():
    """A bright band over the middle third of a dim part is one clear blob to Otsu's threshold; centring on it
    would make the crops agree, but they would hold only the band. The background model sees the whole part."""
    rng = np.random.default_rng(0)
    dim_part = [banded_part_image(rng, body=34)[0].astype(np.float32) / 255 for _ in range(24)]
    spec, why = derive_preprocess(dim_part, 64, (200, 150))
    assert spec.align == "none" and "a piece of what stands out from the background" in why, why
    assert _held_whole_by_crop(dim_part, spec, body=34)
    band_alone = [banded_part_image(rng, body=18)[0].astype(np.float32) / 255 for _ in range(24)]
    assert derive_preprocess(band_alone, 64, (200, 150))[0].align == "center"  # the band is then the whole part


def test_a_dark_scene_is_stretched_so_the_model_sees_its_contrast():
    """The same parts at a tenth of the light: the same choices, but the target lifts the bright end to RANGE_FLOOR,
    where the bright scene keeps its own median."""
    rng = np.random.default_rng(0)
    bright = [part_image(rng, 128)[0].astype(np.float32) / 255 for _ in range(8)]
    dark = [image * 0.1 for image in bright]
    bright_spec, dark_spec = derive_preprocess(bright, 64, (128, 128))[0], derive_preprocess(dark, 64, (128, 128))[0]
    assert bright_spec.photometric_target == pytest.approx(np.median([np.median(i) for i in bright]), abs=0.01)
    top = np.median([np.percentile(i, 99.5) / np.median(i[::4, ::4]) for i in dark]) * dark_spec.photometric_target
    assert top == pytest.approx(RANGE_FLOOR, abs=0.01)
    assert (dark_spec.align, dark_spec.input_size) == (bright_spec.align, bright_spec.input_size)
    assert dark_spec.crop == pytest.approx(bright_spec.crop, rel=0.01)  # the segmentation sees 8-bit levels


def test_input_shape_keeps_area_and_aspect():
    h, w = input_shape(256 * 256, 3.0)
    assert h % 16 == 0 and w % 16 == 0 and abs(w / h - 3.0) < 0.4 and abs(h * w / 65536 - 1) < 0.1


def test_anomaly_mapper_standardises_per_pixel():
    from insightad_train.model import AnomalyMapper

    torch.manual_seed(0)
    mapper = AnomalyMapper(build_model("seed", (32, 48)).eval(), (32, 48), pre_sigma=1.0).eval()
    x = torch.rand(6, 1, 32, 48)
    plain, reconstruction = mapper(x)
    assert plain.shape == (6, 1, 32, 48) and reconstruction.shape == x.shape
    torch.testing.assert_close(plain, mapper.error(x)[0])  # mean 0, scale 1: the blurred squared error
    mapper.standardise_on([x[:3], x[3:]])
    standardised = mapper(x)[0]
    torch.testing.assert_close(standardised.mean(dim=0), torch.zeros(1, 32, 48), atol=1e-5, rtol=0)
    assert float(mapper.scale.min()) > 0


def test_equalised_copies_share_one_median():
    from insightad_train.evaluate import equalise

    rng = np.random.default_rng(4)
    for brightness in (0.7, 1.0, 1.15):
        image = np.clip(part_image(rng, 96, brightness=brightness)[0] / 255.0, 0, 1).astype(np.float32)
        for mode in ("equalised_scale", "equalised_shift"):
            assert np.median(equalise(image, mode, 0.3)) == pytest.approx(0.3, abs=2e-3)  # a dark category stays dark
        assert equalise(image, "raw", 0.3) is image


def test_every_fit_setting_is_an_option_with_the_configs_default():
    from insightad_train.cli import fit
    from insightad_train.config import FIT_DEFAULTS

    options = {p.name: p.default for p in fit.params}
    assert set(FIT_DEFAULTS) <= set(options)
    assert all(options[name] == value for name, value in FIT_DEFAULTS.items())


def _held_whole_by_crop(images: list[np.ndarray], spec, body: float) -> bool:
    """Whether every pixel of every image's part body (its gray level ``body``, or brighter) lands in the input."""
    inside = []
    for image in images:
        _, matrix = prepare_work(image, replace(spec, work_size=min(image.shape), photometric="none"))
        ys, xs = np.nonzero(cv2.GaussianBlur(image, (0, 0), 2.0) > (body - 6) / 255)
        u, v = matrix @ np.vstack([xs, ys, np.ones_like(xs)]).astype(np.float64)
        inside.append(np.all((u >= 0) & (u < spec.input_size[1]) & (v >= 0) & (v < spec.input_size[0])))
    return bool(np.all(inside))


def test_an_unaligned_part_is_cropped_to_where_it_lies():
    """A part that cannot be aligned on need not cost the model's pixels on empty background: the crop holds
    wherever the parts lie in the training images, and nothing more than a margin; `--align none` keeps the
    whole frame, and a texture filling the frame is left whole."""
    rng = np.random.default_rng(1)
    dim_part = [banded_part_image(rng, body=34)[0].astype(np.float32) / 255 for _ in range(24)]
    spec, why = derive_preprocess(dim_part, 64, (200, 150))
    assert spec.align == "none" and "cropped to where anything departs from the background" in why, why
    assert spec.crop[0] * spec.crop[1] < 0.6 * (200 / 150)  # the part is 0.34 x 0.66 of the frame, moving 12 px
    assert _held_whole_by_crop(dim_part, spec, body=34)
    assert spec.input_size[0] > spec.input_size[1]  # the portrait part keeps a portrait input
    assert derive_preprocess(dim_part, 64, (200, 150), align="none")[0].crop == (1.0, 200 / 150)
    texture = [rng.uniform(0.3, 0.7, (150, 150)).astype(np.float32) for _ in range(8)]
    assert derive_preprocess(texture, 64, (150, 150))[0].crop == (1.0, 1.0)


def test_a_lamps_faint_falloff_is_not_taken_for_a_part():
    """On a clean background (a tenth of a gray level of noise) a lamp that lights the middle one gray level more
    than the edges departs from the frame edge's level by many times that noise: without the floor it would
    count as part, and the crop would grow to the whole frame."""
    rng = np.random.default_rng(2)
    ys, xs = np.mgrid[0:200, 0:150]
    lamp = (1 / 255) * np.exp(-((xs - 75) ** 2 + (ys - 100) ** 2) / (2 * 60.0 ** 2))
    frames = []
    for _ in range(24):
        frame = 18 / 255 + lamp + rng.normal(0, 0.1 / 255, (200, 150))
        top, left = rng.integers(55, 70), rng.integers(50, 60)
        frame[top:top + 80, left:left + 40] = 60 / 255
        frames.append(frame.astype(np.float32))
    x0, y0, x1, y1 = where_parts_lie(frames)
    assert x0 <= 50 / 150 and x1 >= 100 / 150 and y0 <= 55 / 150 and y1 >= 150 / 150  # every part, whole
    assert (x1 - x0) * (y1 - y0) < 0.5 * (200 / 150)  # and not the falloff
