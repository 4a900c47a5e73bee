import math

import cv2
import numpy as np
import pytest

from insightad_edge.errors import ImageError
from insightad_edge.metadata import Preprocess
from insightad_edge.preprocess import decode, find_part, prepare
from synthetic import part_image

ALIGNED = Preprocess(input_size=(32, 64), work_size=64, photometric_target=0.75, align="center_rotate", crop=(0.8, 0.4))


def test_decode_path_bytes_and_array_agree(tmp_path, part):
    path = tmp_path / "part.png"
    cv2.imwrite(str(path), part)
    from_path, from_bytes, from_array = decode(path), decode(path.read_bytes()), decode(part)
    assert from_path.dtype == np.float32 and from_path.shape == part.shape
    np.testing.assert_array_equal(from_path, from_bytes)
    np.testing.assert_array_equal(from_path, from_array)
    assert 0.0 <= from_path.min() and from_path.max() <= 1.0


def test_sixteen_bit_and_bgra_copies_decode_like_the_gray_original(tmp_path, part):
    gray = decode(part)
    sixteen = part.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "16.png"), sixteen)
    bgra = cv2.cvtColor(part, cv2.COLOR_GRAY2BGRA)
    cv2.imwrite(str(tmp_path / "bgra.png"), bgra)
    np.testing.assert_allclose(decode(tmp_path / "16.png"), gray, atol=1e-6)
    np.testing.assert_allclose(decode(sixteen), gray, atol=1e-6)
    np.testing.assert_allclose(decode(tmp_path / "bgra.png"), gray, atol=1e-6)
    np.testing.assert_allclose(decode(cv2.cvtColor(part, cv2.COLOR_GRAY2BGR)), gray, atol=1e-6)


def test_dark_frames_are_not_mistaken_for_another_format(part):
    dark = (part // 60).astype(np.uint8)  # max value 4: still 8-bit, never rescaled as if it were [0, 1]
    np.testing.assert_allclose(decode(dark), dark / 255.0, atol=1e-7)


@pytest.mark.parametrize("payload, fragment", [
    (b"", "empty"),
    (b"hello, not an image", "not a readable image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not a readable image"),
])
def test_bad_bytes_raise_image_error(payload, fragment):
    with pytest.raises(ImageError, match=fragment):
        decode(payload)


def test_truncated_png_raises_image_error(tmp_path, part):
    data = cv2.imencode(".png", part)[1].tobytes()
    with pytest.raises(ImageError):
        decode(data[: len(data) // 3])


def test_unsupported_arrays_and_tiny_images_are_refused():
    with pytest.raises(ImageError, match="too small"):
        decode(np.zeros((4, 4), np.uint8))
    with pytest.raises(ImageError, match="dtype"):
        decode(np.zeros((32, 32), np.int64))
    with pytest.raises(ImageError, match="shape"):
        decode(np.zeros((32, 32, 2), np.uint8))
    with pytest.raises(ImageError, match="cannot read"):
        decode("/no/such/file.png")
    with pytest.raises(ImageError, match="more than the 160 megapixels"):  # a view: no memory behind it
        decode(np.broadcast_to(np.uint8(0), (13000, 13000)))


@pytest.mark.parametrize("values", [np.full((32, 32), 200.0), np.full((32, 32), np.nan), np.full((32, 32), -0.1)])
def test_float_frames_outside_zero_to_one_are_refused_not_guessed(values, part):
    """A float frame of 8-bit values (or NaN) is refused with its range, never rescaled by a guess."""
    with pytest.raises(ImageError, match=r"must lie in \[0, 1\]"):
        decode(values.astype(np.float32))
    np.testing.assert_allclose(decode(part / 255.0), decode(part), atol=1e-6)  # in range: taken as it is


def test_huge_image_is_scored_at_model_size(rng):
    image = cv2.resize(part_image(rng, 128)[0], (3000, 3000))
    prepared = prepare(decode(image), ALIGNED)
    assert prepared.input.shape == (1, 32, 64)


def test_pose_puts_the_heavy_end_left_whatever_the_angle(rng):
    inputs = []
    for angle in (0.3, 1.9, 3.5, 5.2):
        image, _ = part_image(np.random.default_rng(7), 128, angle=angle)
        found = find_part(decode(image), dark=True).angle
        difference = (found - angle + math.pi) % (2 * math.pi) - math.pi
        assert abs(difference) < 0.1, (angle, found)
        inputs.append(prepare(decode(image), ALIGNED).input)
    # every pose gives nearly the same aligned input
    for other in inputs[1:]:
        assert np.mean(np.abs(other - inputs[0])) < 0.03


def test_brightness_normalisation_undoes_exposure_changes(rng):
    image, _ = part_image(np.random.default_rng(3), 128, angle=0.5)
    darker = (image * 0.8).astype(np.uint8)
    a, b = prepare(decode(image), ALIGNED).input, prepare(decode(darker), ALIGNED).input
    assert np.mean(np.abs(a - b)) < 0.01


def test_black_and_empty_frames_give_clear_errors():
    with pytest.raises(ImageError, match="black"):
        prepare(np.zeros((64, 64), np.float32), ALIGNED)
    with pytest.raises(ImageError, match="no part"):
        prepare(np.full((64, 64), 0.8, np.float32), ALIGNED)
