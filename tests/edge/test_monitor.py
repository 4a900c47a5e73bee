"""The drift monitor on streams of synthetic parts: quiet on good ones, alarmed quickly by real degradations."""
import cv2
import numpy as np
import pytest

from insightad_edge import Detector
from insightad_edge.monitor import WINDOW, DriftMonitor, binomial_tail
from synthetic import part_image

ALARM_WITHIN = 35  # parts after a degradation starts: a window median flips after WINDOW / 2 + 1 = 26 judged parts


def goods(seed: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [part_image(rng, 128)[0] for _ in range(count)]


def run(monitor: DriftMonitor, detector: Detector, frames) -> list:
    states = []
    for frame in frames:
        result = detector(frame, not_inspectable="report")
        states.append(monitor.feed(result.status, result.score, result.stats))
    return states


def darker(frame, factor):
    return (frame * factor).astype(np.uint8)


def blurred(frame, sigma):
    return cv2.GaussianBlur(frame, (0, 0), sigma)


def shifted(frame, share):
    dx = int(round(share * frame.shape[1]))
    return cv2.warpAffine(frame, np.float32([[1, 0, dx], [0, 1, 0]]), frame.shape[::-1], borderMode=cv2.BORDER_REPLICATE)


def test_good_parts_raise_nothing(model_path):
    detector = Detector(model_path)
    states = run(DriftMonitor(detector.metadata), detector, goods(10, 150))
    assert {s.level for s in states} == {"ok"}, [s.reasons for s in states if s.level != "ok"][:3]
    assert states[-1].parts == WINDOW and states[-1].reference


@pytest.mark.parametrize("name, degrade, words", [
    ("lamp at 60%", lambda f: darker(f, 0.6), ("darker than any training image",)),
    # blurred parts get no verdict of their own (out of focus): the monitor alarms on the frames without one
    ("focus lost", lambda f: blurred(f, 2.0), ("less sharp", "could not be judged")),
    # these parts fill most of the frame: moved by 10% of it, many are cut by its edge and get no verdict
    ("fixture moved", lambda f: shifted(f, 0.1), ("further right", "could not be judged")),
])
def test_degradations_raise_an_alarm_quickly_and_it_clears(model_path, name, degrade, words):
    detector = Detector(model_path)
    monitor = DriftMonitor(detector.metadata)
    assert {s.level for s in run(monitor, detector, goods(11, 60))} == {"ok"}
    states = run(monitor, detector, [degrade(f) for f in goods(12, 60)])
    first = next(i for i, s in enumerate(states) if s.level == "alarm")
    assert first < ALARM_WITHIN, name
    assert any(word in reason for reason in states[-1].reasons for word in words), states[-1].reasons
    recovered = run(monitor, detector, goods(13, 60))
    assert recovered[-1].level == "ok"


def test_a_rising_share_of_defects_raises_an_alarm(model_path):
    detector = Detector(model_path)
    monitor = DriftMonitor(detector.metadata, expected_defect_rate=0.05)
    rng = np.random.default_rng(14)
    assert {s.level for s in run(monitor, detector, goods(15, 60))} == {"ok"}
    frames = [part_image(rng, 128, defect=rng.random() < 0.4)[0] for _ in range(60)]
    states = run(monitor, detector, frames)
    first = next(i for i, s in enumerate(states) if s.level == "alarm")
    assert first < 40 and "defective" in states[first].reasons[0]  # 40% defects against 5% expected


def test_a_schema_1_model_says_it_has_no_reference(v1_model_path):
    detector = Detector(v1_model_path)
    state = run(DriftMonitor(detector.metadata), detector, goods(16, 30))[-1]
    assert not state.reference and "no calibration reference" in state.reasons[-1]


def test_binomial_tail():
    assert binomial_tail(0, 10, 0.1) == 1.0
    assert binomial_tail(10, 10, 0.5) == pytest.approx(0.5 ** 10)
    assert binomial_tail(1, 3, 0.5) == pytest.approx(1 - 0.125)
