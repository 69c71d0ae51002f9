"""The technician's status page in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`,
driven by Selenium) loads /ui/ from a running server, shows the published state, the picture, the journey of a real
run folder and its files, and its blackout button posts the action that comes back as a state change, over OSC
and on the page itself (LISTEN). A screenshot of the page is kept in the test's folder for a person to look at."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from installation.control.config import HttpConfig, OscConfig
from installation.control.service import ControlService
from installation.control.state import ControlState

sys.path.insert(0, str(Path(__file__).parent))
from osc_client import Client  # noqa: E402
from page_server import WAIT, folder_view, free_port, make_run_folder, wait_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="headless Chromium is not installed: apt-get install "
                                "chromium chromium-driver (.ci/run does)")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=412,3200")  # a phone's width, tall enough to take the whole page in one screenshot


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run_folder(tmp_path_factory.mktemp("page"))


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (the [test] extra has it)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + (f"--user-data-dir={tmp_path / 'profile'}",):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def text_of(driver: object, selector: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector).text  # type: ignore[attr-defined]


def click(driver: object, selector: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, selector).click()  # type: ignore[attr-defined]


def test_the_page_in_chromium_reads_the_state_and_its_blackout_button_works(browser, run_folder, tmp_path):
    driver = browser
    feedback = Client(("127.0.0.1", 9))  # receives the installation's feedback over OSC
    control = ControlService(OscConfig(host="127.0.0.1", port=0, state_every=0.0, advertise=False,
                                       feedback=(f"127.0.0.1:{feedback.address[1]}",)),
                             http=HttpConfig(host="127.0.0.1", port=free_port()), folder=folder_view(run_folder))
    state = ControlState(iteration=1234, status="running", phase="journey", cycle=2, fps=29.7, steps_per_second=3.25,
                         device="cpu", loss=-2.5, d=-1.25, diversity=0.42, uptime=93784.0, disk_free=5.4e10,
                         controls={"blackout": 0.0, "lr": 0.001})
    with control:
        control.publish(state)
        sheet = np.asarray(Image.open(run_folder / "contact_sheet.png").convert("RGB"))  # the engine's pictures
        control.picture.offer(sheet, 0.0)
        driver.get(control.http.urls()[0] + "ui/")
        wait_for(lambda: text_of(driver, "[data-field=iteration]") == "1234", "the iteration on the page")
        assert text_of(driver, "#status") == "running" and text_of(driver, "[data-field=device]") == "cpu"
        assert text_of(driver, "[data-field=uptime]") == "1 d 2 h"
        assert text_of(driver, "[data-field=disk_free]") == "50.3 GB"
        wait_for(lambda: text_of(driver, "#link") == "live", "the websocket")
        assert text_of(driver, "#blackout") == "Blackout"

        click(driver, "#blackout")
        action, = wait_for(control.inbox.drain, "the blackout action from the page")
        assert (action.name, action.value, action.source) == ("blackout", (1.0, 1.0), "web")
        # the live loop applies it and publishes the state that follows
        control.publish(dataclasses.replace(state, iteration=1235, controls={**state.controls, "blackout": 1.0}))
        assert feedback.expect("/uncanny/view/blackout", lambda args: args == [1.0]) == [1.0]  # over OSC
        wait_for(lambda: text_of(driver, "#blackout") == "Back from black", "the page showing the blackout")
        wait_for(lambda: text_of(driver, "[data-field=iteration]") == "1235", "the new iteration, pushed")

        wait_for(lambda: driver.execute_script("return document.querySelector('#picture').naturalWidth")
                 == sheet.shape[1], "the picture")
        wait_for(lambda: "live-20261206-101500.mp4" in text_of(driver, "#files"), "the recordings")
        wait_for(lambda: "start at 0" in text_of(driver, "#events"), "the events")
        assert "line 59" in driver.execute_script("return document.querySelector('#log').textContent")
        wait_for(lambda: all(count > 20 for count in driver.execute_script(  # the three curves, in their colours
            "const c = document.querySelector('#journey');"
            "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "return [[90, 160, 255], [255, 140, 60], [106, 212, 138]].map(([r, g, b]) => {"
            "  let n = 0; for (let i = 0; i < d.length; i += 4)"
            "    if (Math.abs(d[i] - r) + Math.abs(d[i + 1] - g) + Math.abs(d[i + 2] - b) < 40) n++;"
            "  return n; });")), "the journey plot")
        screenshot = tmp_path / "status-page.png"
        driver.save_screenshot(str(screenshot))
        assert Image.open(screenshot).size[0] >= 412
    feedback.close()


def test_a_token_is_asked_for_and_kept(browser):
    driver = browser
    control = ControlService(OscConfig(enabled=False, advertise=False),
                             http=HttpConfig(host="127.0.0.1", port=free_port(), token="gallery-7"))
    with control:
        control.publish(ControlState(iteration=3))
        driver.get(control.http.urls()[0] + "ui/")
        wait_for(lambda: text_of(driver, "[data-field=iteration]") == "3", "the page")
        click(driver, "#snapshot")
        wait_for(lambda: "needs its token" in text_of(driver, "#action-note"), "the token request")
        assert control.inbox.drain() == []
        token = driver.find_element("css selector", "#token")
        token.send_keys("gallery-7\n")
        click(driver, "#snapshot")
        action, = wait_for(control.inbox.drain, "the snapshot with the token")
        assert action.name == "snapshot"
        driver.refresh()  # kept in the browser: no second asking
        wait_for(lambda: text_of(driver, "[data-field=iteration]") == "3", "the page again")
        click(driver, "#snapshot")
        assert [a.name for a in wait_for(control.inbox.drain, "the second snapshot")] == ["snapshot"]


def test_the_page_of_a_real_installation(request, tmp_path):
    """`run_installation.py --headless` with the status page on a free port: the page shows the engine's iteration,
    and its blackout button reaches the installation (the state comes back over OSC)."""
    http_port = free_port()
    process = subprocess.Popen([sys.executable, str(ROOT / "run_installation.py"), "--headless", "--seconds", "300",
                                "--size", "64x64", "--osc-port", "0", "--http-port", str(http_port), "--run-dir",
                                str(tmp_path / "run"), "--device", "cpu"], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    try:
        lines = []
        for line in process.stderr:  # the start lines: OSC's port, then the page's (when the live loop builds it)
            lines.append(line)
            if "status page on" in line or (len(lines) > 1 and "OSC on udp" in lines[-2]):
                break
        assert any(f":{http_port}/ui/" in line for line in lines), "".join(lines)
        osc_port = int(re.search(r"OSC on udp [\d.]+:(\d+)", "".join(lines)).group(1))
        driver = request.getfixturevalue("browser")
        driver.get(f"http://127.0.0.1:{http_port}/ui/")
        wait_for(lambda: text_of(driver, "[data-field=iteration]") not in ("–", "0"), "training on the page", 120)
        click(driver, "#blackout")
        client = Client(("127.0.0.1", osc_port))
        deadline = time.monotonic() + WAIT * 3
        while True:  # a question is answered once, with the state of that moment: asked again until the click landed
            client.send("/uncanny/state")
            try:
                client.expect("/uncanny/view/blackout", lambda args: args == [1.0], wait=WAIT / 2)
                break
            except AssertionError:
                assert time.monotonic() < deadline, "the page's blackout never reached the installation"
        client.close()
        wait_for(lambda: driver.execute_script("return document.querySelector('#picture').naturalWidth") > 0,
                 "the show's picture")
        driver.save_screenshot(str(tmp_path / "installation-page.png"))
    finally:
        process.terminate()
        process.wait(60)
