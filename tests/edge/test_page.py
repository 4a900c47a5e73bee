"""The operator's page in a real browser: headless Chromium loads it from a real server on 127.0.0.1."""
import base64
import datetime
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from browser import chromium, open_page
from synthetic import part_image
from test_server import encoded, request, start

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"  # kept after the run (ignored by git)


@pytest.mark.browser
def test_the_page_shows_the_verdict_of_a_request_just_sent(model_path):
    process, url = start(model_path, env={"INSIGHTAD_API_KEY": "line-7"})
    try:
        image = part_image(np.random.default_rng(31), 128, defect=True)[0]
        status, _, answer = request(url + "/infer", encoded(image), {"X-API-Key": "line-7"})
        answer = json.loads(answer)
        assert status == 200 and answer["Anomaly"] is True
        page = f"{url}/#key=line-7"
        dom = chromium("--dump-dom", page)
        assert 'data-status="defect"' in dom and ">DEFECT<" in dom
        assert f"{answer['score']:.3g}" in dom  # the score as the page prints it (3 significant digits)
        assert 'src="data:image/png;base64,' in dom  # the overlay of that part
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "operator-page.png"
        chromium(f"--screenshot={shot}", page)
        picture = cv2.imread(str(shot))
        assert picture is not None and picture.shape[:2] == (900, 1280)
        without_key = chromium("--dump-dom", f"{url}/")
        assert "wants an API key" in without_key and ">DEFECT<" not in without_key
    finally:
        process.terminate()
        process.wait(timeout=30)


SCREENS = ((800, 480), (1024, 600), (1280, 800), (1920, 1080), (390, 844), (480, 800))  # line-side panels, a phone


@pytest.mark.browser
def test_the_verdict_is_in_view_without_scrolling_on_every_screen_a_line_has(model_path):
    """On a 7" line-side panel (800x480) the page stacked the part's picture, as wide as the screen and as tall,
    above the verdict: the operator saw the part and no verdict. The verdict now stands at the top on every
    screen, and the picture is never taller than the screen."""
    process, url = start(model_path)
    try:
        assert request(url + "/infer", encoded(part_image(np.random.default_rng(37), 128, defect=True)[0]))[0] == 200
        with open_page(url + "/") as page:
            page.wait_for_selector('[data-status="defect"]')
            page.wait_for_function("document.getElementById('picture').naturalWidth > 0")
            for width, height in SCREENS:
                page.set_viewport_size({"width": width, "height": height})
                page.wait_for_timeout(100)
                verdict, picture = (page.locator(selector).bounding_box() for selector in ("#verdict", "#picture"))
                assert verdict["y"] >= 0 and verdict["y"] + verdict["height"] <= height / 2, (width, height, verdict)
                assert 0 <= verdict["x"] and verdict["x"] + verdict["width"] <= width, (width, height, verdict)
                assert picture["y"] + picture["height"] <= height and picture["height"] >= height / 3, (width, height,
                                                                                                         picture)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_last_hour_on_the_page_forgets_parts_older_than_an_hour(model_path, monkeypatch):
    """A station idle since its last busy hour shows an empty hour, not the old one as if it were now."""
    import time

    from insightad_edge import Detector, board
    from insightad_edge.monitor import DriftMonitor

    monkeypatch.setattr(board, "HOUR_S", 0.5)
    monkeypatch.setattr(board, "MINUTE_S", 0.1)
    tally = board.Board(DriftMonitor(Detector(model_path).metadata))
    for status, skipped in (("ok", 0), ("defect", 3), ("not_inspectable", 1)):
        tally.add(time_utc="2026-11-30T08:00:00.000Z", status=status, score=None, threshold=1.0, error=None,
                  skipped=skipped)
    hour = tally.summary()["last_hour"]
    assert (hour["parts"], hour["defects"], hour["not_inspectable"], hour["skipped"]) == (3, 1, 1, 4)
    time.sleep(1.6)
    assert tally.summary()["last_hour"] == {"parts": 0, "defects": 0, "defect_rate": None, "not_inspectable": 0,
                                            "errors": 0, "skipped": 0}


@pytest.mark.browser
def test_a_page_left_open_follows_each_verdict_and_never_shows_one_that_no_longer_stands(model_path):
    """On the line's screen the page stays open for a shift: a verdict without a picture (bytes that are no image)
    hides the part before it, which would otherwise stand beside ERROR as if it were that part; and a station that
    stops answering takes its last verdict off the screen."""
    process, url = start(model_path)
    rng = np.random.default_rng(32)
    try:
        with open_page(url + "/", timezone_id="Asia/Tokyo", locale="de-DE") as page:
            page.wait_for_selector('[data-status="none"]')
            assert request(url + "/infer", encoded(part_image(rng, 128, defect=True)[0]))[0] == 200
            page.wait_for_selector('[data-status="defect"]')
            assert page.is_visible("#picture") and page.get_attribute("#picture", "src").startswith("data:image/png")
            assert page.inner_text("#drift") == "WATCHING (1 of 20 parts)"  # not a green OK on one part
            utc = datetime.datetime.fromisoformat(page.get_attribute("#caption", "title").replace("Z", "+00:00"))
            in_tokyo = utc.astimezone(datetime.timezone(datetime.timedelta(hours=9)))  # the line's clock, not UTC
            assert in_tokyo.strftime("%d.%m.%y, %H:%M:%S") in page.inner_text("#caption")
            unreadable = json.dumps({"image": base64.b64encode(b"not an image").decode()}).encode()
            assert request(url + "/infer", unreadable)[0] == 422
            page.wait_for_selector('[data-status="error"]')
            assert "not a readable image" in page.inner_text("#reason")
            assert not page.is_visible("#picture") and page.get_attribute("#picture", "src") is None
            assert request(url + "/infer", encoded(part_image(rng, 128)[0]))[0] == 200
            page.wait_for_selector('[data-status="ok"]')
            assert page.is_visible("#picture") and page.inner_text("#reason") == ""
            process.terminate()  # the server stops: its last OK must not stay on the screen as if parts still passed
            process.wait(timeout=30)
            page.wait_for_selector('[data-status="unreachable"]')
            assert page.inner_text("#verdict") == "NO VERDICT" and "cannot reach" in page.inner_text("#problem")
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.browser
def test_a_station_that_hangs_takes_its_last_verdict_off_the_screen(model_path):
    """A hung server (here stopped with SIGSTOP; a deadlock, a machine swapping to death) still has its
    connections accepted by the system, and never answers: the page waited for ever on its request and kept the
    last green OK on the line's screen. A request that takes too long now means no verdict stands."""
    import signal

    process, url = start(model_path)
    try:
        with open_page(url + "/") as page:
            assert request(url + "/infer", encoded(part_image(np.random.default_rng(35), 128)[0]))[0] == 200
            page.wait_for_selector('[data-status="ok"]')
            process.send_signal(signal.SIGSTOP)
            page.wait_for_selector('[data-status="unreachable"]', timeout=15_000)
            assert page.inner_text("#verdict") == "NO VERDICT" and "does not answer" in page.inner_text("#problem")
            process.send_signal(signal.SIGCONT)
            page.wait_for_selector('[data-status="ok"]', timeout=15_000)  # and back once it answers again
    finally:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        process.wait(timeout=30)


def test_a_frame_that_is_no_image_gives_its_verdict_without_a_picture_not_a_broken_page(model_path):
    """A station's error verdict for a float frame outside [0, 1] made every /api/last fail until the next part."""
    from insightad_edge import Detector, board
    from insightad_edge.monitor import DriftMonitor

    tally = board.Board(DriftMonitor(Detector(model_path).metadata))
    tally.add(time_utc="2026-11-30T08:00:00.000Z", status="error", score=None, threshold=1.0,
              error="a float image must lie in [0, 1]", image=np.full((64, 64), 3.0, np.float32))
    last = tally.last()
    assert last["status"] == "error" and last["overlay"] is None


@pytest.mark.browser
def test_a_page_left_open_across_a_restart_shows_the_new_part_not_the_old_one_of_the_same_number(model_path):
    """A restarted server numbers its verdicts from 1 again: the page must not take its part #1 for the one it
    already shows, and keep the old part's score and picture beside the new verdict."""
    process, url = start(model_path)
    try:
        with open_page(url + "/") as page:
            assert request(url + "/infer", encoded(part_image(np.random.default_rng(33), 128, defect=True)[0]))[0] == 200
            page.wait_for_selector('[data-status="defect"]')
            old_score = page.inner_text("#score")
            process.terminate()
            process.wait(timeout=30)
            page.wait_for_selector('[data-status="unreachable"]')
            process, _ = start(model_path, port=int(url.rsplit(":", 1)[1]))
            status, _, answer = request(url + "/infer", encoded(part_image(np.random.default_rng(34), 128)[0]))
            assert status == 200
            page.wait_for_selector('[data-status="ok"]')
            page.wait_for_timeout(1500)  # a refresh or two after the verdict: what the screen settles on
            assert page.inner_text("#score") == f"{json.loads(answer)['score']:.3g}" != old_score
            assert "over" not in page.get_attribute("#bar-fill", "class")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_stall_that_ends_brings_back_what_the_source_was_unless_it_said_otherwise_meanwhile(model_path):
    """The stall watch says `resumed` from its own thread as the loop moves; the loop, unblocked by a listing that
    found the folder gone, says `lost` about then: whichever comes first, the page must not end on `live`."""
    from insightad_edge import Detector, board
    from insightad_edge.monitor import DriftMonitor

    for events, state in (((("opened", "live"), ("stalled", "stalled"), ("resumed", "live")), "live"),
                          ((("opened", "live"), ("stalled", "stalled"), ("lost", "lost"), ("resumed", "lost")), "lost"),
                          ((("opened", "live"), ("stalled", "stalled"), ("resumed", "live"), ("lost", "lost")), "lost"),
                          ((("opened", "live"), ("lost", "lost"), ("stalled", "stalled"), ("resumed", "lost")), "lost")):
        tally = board.Board(DriftMonitor(Detector(model_path).metadata))
        for kind, after in events:
            tally.source_event(kind, kind, "2026-11-30T08:00:00Z")
            assert tally.source_state == after, (events, kind)
        assert tally.source_state == state


@pytest.mark.browser
def test_stations_behind_one_address_each_show_their_own_page(model_path):
    """A plant's reverse proxy offers each line's station under a path of its own (/line-3/, /line-4/) on one
    address: each page loads its own script and asks its own station, with its own API key, kept per station."""
    from loopback import PrefixProxy

    (three, url_3), (four, url_4) = start(model_path, env={"INSIGHTAD_API_KEY": "key-3"}), \
        start(model_path, env={"INSIGHTAD_API_KEY": "key-4"})
    proxy = PrefixProxy({"line-3": url_3, "line-4": url_4})
    try:
        rng = np.random.default_rng(47)
        for url, key, defect in ((url_3, "key-3", True), (url_4, "key-4", False)):
            status, _, _ = request(url + "/infer", encoded(part_image(rng, 128, defect=defect)[0]), {"X-API-Key": key})
            assert status == 200
        shows = "document.getElementById('verdict').textContent === '{}'"
        with open_page(f"{proxy.url}/line-3/#key=key-3") as page:
            page.wait_for_function(shows.format("DEFECT"), timeout=30_000)
            page.goto(f"{proxy.url}/line-4#key=key-4")  # without the slash: the proxy adds it
            page.wait_for_function(shows.format("OK"), timeout=30_000)
            page.goto(f"{proxy.url}/line-3/")  # opened again later: the key of line 3 is still line 3's
            page.wait_for_function(shows.format("DEFECT"), timeout=30_000)
    finally:
        proxy.close()
        for process in (three, four):
            process.terminate()
            process.wait(timeout=30)
