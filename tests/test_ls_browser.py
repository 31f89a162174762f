"""An annotator in a real browser: headless Chromium (Debian's `chromium` + `chromium-driver`,
installed by `make test` where missing) driven by Selenium, against the suite's Label Studio.

One pass through what an annotator does: log in with an account from `wb ls users add`, open a
task, see the image load, draw a box (a second one is refused), submit, submit a pre-filled box
whose detector guessed the wrong class, and `wb ls pull`; then the annotation Label Studio
accepted but wb rejected (two boxes) shows its reason beside the image and in the task list,
the annotator fixes it, and the next pull accepts it. Screenshots go to $TMPDIR/wb-ls-browser/.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from annotations import SAMPLE_BOXES
from annotations.boxfile import read_box_file
from annotations.convert import PixelBox, percent_to_pixels, rectangle_result
from annotations.feedback import ACCEPTED
from db.models import Annotation, Image, Prediction, Run
from db.models.labels import LsTask

pytestmark = [pytest.mark.slow, pytest.mark.labelstudio]

VIEWPORT = (1600, 857)  # the screen the layout must fit without scrolling
SHOTS = Path(tempfile.gettempdir()) / "wb-ls-browser"
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync")


def _chromium() -> tuple[str, str]:
    """(browser, driver) paths, or skip saying what is missing and how to get it."""
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("needs Chromium and chromedriver: apt-get install -y chromium chromium-driver "
                    "(`make test` installs them where it can)")
    return browser, driver


@pytest.fixture
def browser(tmp_path):
    """A fresh headless Chromium with a 1600x857 viewport."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the test extra)")
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.add_argument(f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}")
    options.binary_location = binary
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        # The window includes the browser's own bars: grow it until the page itself is 1600x857.
        # (Emulating the viewport instead would leave mouse input in the smaller window's pixels.)
        inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
        size = driver.get_window_size()
        driver.set_window_size(size["width"] + VIEWPORT[0] - inner[0], size["height"] + VIEWPORT[1] - inner[1])
        assert driver.execute_script("return [window.innerWidth, window.innerHeight]") == list(VIEWPORT)
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()


def _wait(what: str, check, timeout: float = 45.0, every: float = 0.25):
    """check()'s first truthy value within timeout, else fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except Exception:  # noqa: BLE001 - the page is still building: try again
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def _log_in(driver, url: str, email: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/user/login/")
    driver.find_element(By.NAME, "email").send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
    _wait("the login to finish", lambda: "/user/login" not in driver.current_url)


def _open_task(driver, url: str, project: int, task: int, shot: str, regions: int) -> dict:
    """Open one task's labelling view; wait for the editor's image and its `regions` boxes; return
    the drawing stage's geometry (viewport pixels) and the image's natural width."""
    driver.get(f"{url}/projects/{project}/data?task={task}")
    image = _wait("the task's image to load", lambda: driver.execute_script("""
        const img = Array.from(document.querySelectorAll('img')).find(i => {
            const r = i.getBoundingClientRect(); return r.width > 150 && r.height > 100; });
        const stage = document.querySelector('.konvajs-content');  // the canvas the annotator draws on
        if (!img || !img.complete || img.naturalWidth === 0 || !stage) return null;
        const r = stage.getBoundingClientRect();
        return {natural: img.naturalWidth, x: r.left, y: r.top, w: r.width, h: r.height};
    """))
    _wait("the editor", lambda: driver.execute_script("return !!(window.Htx && window.Htx.annotationStore.selected)"))
    _wait(f"{regions} box(es) in the editor", lambda: len(_regions(driver)) == regions)
    time.sleep(0.5)  # let the page settle before the picture
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{shot}.png"))
    return image


def _regions(driver) -> list[list[str]]:
    return driver.execute_script(
        "return window.Htx.annotationStore.selected.regions.map(r => r.labels ? r.labels.slice() : [])")


def _drag(driver, x0: float, y0: float, x1: float, y1: float) -> None:
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    actions = ActionBuilder(driver)
    pointer = actions.pointer_action
    pointer.move_to_location(int(x0), int(y0)).pointer_down()
    pointer.move_to_location(int((x0 + x1) / 2), int((y0 + y1) / 2)).move_to_location(int(x1), int(y1)).pointer_up()
    actions.perform()
    time.sleep(0.5)


def _press(driver, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(keys).perform()
    time.sleep(0.3)


def _click_button(driver, text: str) -> None:
    from selenium.webdriver.common.by import By

    _wait(f"the {text} button", lambda: driver.find_element(By.XPATH, f"//button[normalize-space()='{text}']")).click()


def _in_view(driver, xpath: str) -> bool:
    """True when the element lies wholly inside the viewport (nothing to scroll for)."""
    return driver.execute_script("""
        const el = document.evaluate(arguments[0], document, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;
        if (!el) return false;
        const r = el.getBoundingClientRect();
        return r.top >= 0 && r.left >= 0 && r.bottom <= window.innerHeight && r.right <= window.innerWidth;
    """, xpath)


def test_an_annotator_in_a_real_browser(cli, ws, imported_sample_db, ls_env, browser):
    from label_studio_sdk import LabelStudio

    t0 = time.monotonic()
    ws.root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(imported_sample_db, ws.root / "wb.db")
    sdk = LabelStudio(base_url=ls_env["url"], api_key=ls_env["token"])
    with ws.db.session() as s:
        ok = list(s.scalars(select(Image).where(Image.status == "ok", Image.duplicate_of_id.is_(None)).order_by(Image.id)))
        normal = [im for im in ok if im.label == "NORMAL"][:2]
        sick = next(im for im in ok if im.label == "PNEUMONIA")
        pre, two_boxes = normal
        # a detector that boxed the chest but guessed PNEUMONIA on a NORMAL image
        boxes = {r.image: r for r in read_box_file(SAMPLE_BOXES)}
        run = Run(kind="detector", name="wrong class", status="done")
        s.add(run)
        s.flush()
        b = boxes[pre.rel_path]
        s.add(Prediction(run_id=run.id, image_id=pre.id, label="PNEUMONIA", score=0.9,
                         x_min=b.x_min, y_min=b.y_min, x_max=b.x_max, y_max=b.y_max))
        s.add_all(Prediction(run_id=run.id, image_id=im.id, label="NORMAL") for im in (sick, two_boxes))  # found none
        run_id = run.id
    pushed = cli.json("ls", "push", "--images", f"{sick.id},{pre.id},{two_boxes.id}", "--predictions", run_id)
    project = pushed["project_id"]
    with ws.db.session() as s:
        task = {t.image_id: t.ls_task_id for t in s.scalars(select(LsTask))}
    # What maxUsages cannot stop: an annotation with two boxes that arrives through the API.
    w, h = two_boxes.width, two_boxes.height
    sdk.annotations.create(id=task[two_boxes.id], result=[
        rectangle_result(PixelBox(w * 0.1, h * 0.1, w * 0.9, h * 0.9), "chest", w, h, result_id="a"),
        rectangle_result(PixelBox(w * 0.2, h * 0.2, w * 0.6, h * 0.6), "chest", w, h, result_id="b")])

    account = cli.json("ls", "users", "add", "annotator@browser.test")
    _log_in(browser, ls_env["url"], account["email"], account["password"])

    # 1. Draw a box on an image with no pre-annotation; a second box is refused; submit.
    image = _open_task(browser, ls_env["url"], project, task[sick.id], "1-task-opened", regions=0)
    assert image["natural"] == sick.width  # the editor's image element loaded the file
    body = browser.find_element("tag name", "body").text
    assert "Draw ONE box around the chest" in body and "Image label: PNEUMONIA" in body
    for xpath in ("//button[normalize-space()='Submit']", "//*[contains(text(), 'label looks wrong')]",
                  "//*[contains(text(), 'no usable chest')]", "//*[contains(text(), 'Image label: PNEUMONIA')]"):
        assert _in_view(browser, xpath), f"{xpath} is outside the 1600x857 screen"
    assert image["y"] + image["h"] <= VIEWPORT[1] and image["x"] + image["w"] <= VIEWPORT[0]
    x, y, iw, ih = image["x"], image["y"], image["w"], image["h"]
    _press(browser, "1")  # the label's hotkey
    _drag(browser, x + 0.15 * iw, y + 0.1 * ih, x + 0.85 * iw, y + 0.9 * ih)
    assert _regions(browser) == [["chest"]]
    seen = browser.execute_script("return window.Htx.annotationStore.selected.regions[0].serialize().value")
    _press(browser, "1")
    _drag(browser, x + 0.02 * iw, y + 0.02 * ih, x + 0.12 * iw, y + 0.08 * ih)  # outside the first box
    assert _regions(browser) == [["chest"]], "the editor let the annotator draw a second box"
    warning = _wait("the one-box warning", lambda: browser.find_element("css selector", ".ant-modal-wrap"))
    assert "You can't use chest more than 1 time(s)" in warning.text  # maxUsages, said where the annotator looks
    browser.save_screenshot(str(SHOTS / "2-second-box-refused.png"))
    _click_button(browser, "OK")
    _wait("the warning to close", lambda: not browser.find_elements("css selector", ".ant-modal-wrap .ant-modal"))
    _click_button(browser, "Submit")
    _wait("the submitted annotation", lambda: sdk.tasks.get(id=task[sick.id]).total_annotations == 1)

    # 2. A pre-filled box from a detector that guessed the wrong class: submitted untouched.
    _open_task(browser, ls_env["url"], project, task[pre.id], "3-prefilled", regions=1)
    assert _regions(browser) == [["chest"]]  # no class to get wrong: wb takes it from the image label
    assert "Image label: NORMAL" in browser.find_element("tag name", "body").text
    _click_button(browser, "Submit")
    _wait("the submitted annotation", lambda: sdk.tasks.get(id=task[pre.id]).total_annotations == 1)

    pulled = cli.json("ls", "pull")
    assert pulled["by_status"] == {"valid": 2, "rejected": 1} and pulled["feedback_written"] == 1
    with ws.db.session() as s:
        rows = {a.image_id: a for a in s.scalars(select(Annotation))}
    drawn = rows[sick.id]
    assert (drawn.status, drawn.box_label, drawn.diagnosis) == ("valid", "pneumonia chest", "PNEUMONIA")
    # the box the editor showed, in pixels of the file; the drag spanned 70 % x 80 % of the stage
    shown = percent_to_pixels(seen, sick.width, sick.height)
    assert (drawn.x_min, drawn.y_min, drawn.x_max, drawn.y_max) == pytest.approx(
        (shown.x_min, shown.y_min, shown.x_max, shown.y_max), abs=1e-6)
    assert 0.5 < seen["width"] / 100 < 0.9 and 0.6 < seen["height"] / 100 < 1.0, seen
    assert (rows[pre.id].status, rows[pre.id].box_label) == ("valid", "normal chest")
    assert (rows[pre.id].x_min, rows[pre.id].y_max) == pytest.approx((b.x_min, b.y_max), abs=0.01)
    assert rows[two_boxes.id].status == "rejected" and "found 2" in rows[two_boxes.id].reason

    # 3. The rejection is where the annotator looks: beside the image, and in the task list.
    _open_task(browser, ls_env["url"], project, task[two_boxes.id], "4-rejected-shown", regions=2)
    body = browser.find_element("tag name", "body").text
    assert "wb rejected this annotation: expected exactly one chest box, found 2" in body
    assert _in_view(browser, "//*[contains(text(), 'wb rejected this annotation')]")
    # ...fixed there: select the smaller box in the region list, Backspace, Update.
    from selenium.webdriver.common.by import By

    items = browser.find_elements(By.XPATH, "//*[contains(@class,'outliner') or contains(@class,'Outliner')]"
                                            "//*[normalize-space()='chest']")
    assert items, "no region list"
    items[-1].click()
    _press(browser, "\ue003")  # Backspace deletes the selected region
    assert len(_regions(browser)) == 1
    _click_button(browser, "Update")
    _wait("the updated annotation", lambda: len(sdk.annotations.list(id=task[two_boxes.id])[0].result) == 1)
    fixed = cli.json("ls", "pull")
    assert (fixed["updated"], fixed["feedback_written"], fixed["rejected_total"]) == (1, 1, 0)
    _open_task(browser, ls_env["url"], project, task[two_boxes.id], "5-accepted-shown", regions=1)
    assert ACCEPTED in browser.find_element("tag name", "body").text
    browser.get(f"{ls_env['url']}/projects/{project}/data")
    _wait("the task list's wb_feedback column", lambda: ACCEPTED in browser.find_element("tag name", "body").text)
    browser.save_screenshot(str(SHOTS / "6-task-list.png"))
    print(f"browser test: {time.monotonic() - t0:.1f} s")  # shown with -s; the suite's --durations has it too
