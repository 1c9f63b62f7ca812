"""The app end to end in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright): upload, pick a
task, restore, compare, download the PNG; pick an example; upload a corrupt file and read the error on the page; the
page at a phone's width and a desktop's, nothing wider than the window.

Saves screenshots to test-artifacts/ (git-ignored): browser.png after a restoration, browser-error.png after the
refused upload, browser-390.png and browser-1400.png of the whole page at those widths.
"""

import os
import re
import socket
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 90_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian Chromium is not installed at /usr/bin/chromium (apt-get install chromium)"
    ),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def app_url():
    import app

    port = free_port()
    app.demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **app.LAUNCH_OPTIONS
    )
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.demo.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, app_url):
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)  # a restore on a busy 2-core machine takes longer than expect's 5 s
    page.goto(app_url)
    page.wait_for_selector("#restore-button")
    yield page
    context.close()


def test_upload_restore_compare_and_download(page):
    from playwright.sync_api import expect

    example = REPO_ROOT / "examples" / "denoise" / "monarch_noise.png"
    page.locator("#input-image input[type=file]").set_input_files(str(example))
    expect(page.locator("#input-image img")).to_be_visible()
    page.locator("#task").get_by_text("Denoise").click()
    page.locator("#restore-button").click()

    expect(page.locator("#comparison img")).to_have_count(2)
    expect(page.locator("#stages img").first).to_be_visible()
    expect(page.locator("#status")).to_contain_text("denoise: restored 256×171")
    link = page.locator("#result-file a[download]")
    expect(link).to_have_attribute("download", "monarch_noise_denoise.png")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser.png"), full_page=True)

    with page.expect_download() as download_info:
        link.click()
    download = download_info.value
    assert download.suggested_filename == "monarch_noise_denoise.png"
    downloaded = Path(download.path())
    assert downloaded.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(downloaded).size == Image.open(example).size


def test_example_fills_photo_task_and_tile_settings(page):
    from playwright.sync_api import expect

    # Settings the example must put back: another task, and tiles of 512.
    page.locator("#task").get_by_text("Denoise").click()
    page.get_by_text("Advanced").click()
    tile_size = page.locator("#tile-size input[type=number]")
    # The accordion mounts its sliders as it opens, and a fill that lands before the slider has taken its starting
    # value is overwritten by it (seen once in CI: the field read 0 for 90 s). Fill again until the value holds.
    for _ in range(5):
        tile_size.fill("512")
        tile_size.press("Enter")
        try:
            expect(tile_size).to_have_value("512", timeout=3_000)
            break
        except AssertionError:
            continue
    expect(tile_size).to_have_value("512")

    # Each set shows its photos as thumbnails under a label naming the task; a click loads every input.
    page.locator("#derain-examples button.gallery-item").first.click()
    expect(page.locator("#input-image img")).to_have_attribute("src", re.compile(r"building_rain\.png$"))
    expect(page.locator("#task input[value=derain]")).to_be_checked()
    expect(tile_size).to_have_value("0")
    # Examples are cached lazily: the first click restores it and shows the result like the button would.
    expect(page.locator("#status")).to_contain_text("derain: restored 256×")
    expect(page.locator("#comparison img")).to_have_count(2)


@pytest.mark.parametrize("width", [390, 1400])
def test_page_fits_the_window_and_examples_are_thumbnails(browser, app_url, width):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": width, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(app_url)
        page.wait_for_selector("#restore-button")
        for task in ("auto", "deblur", "derain", "denoise"):
            examples = page.locator(f"#{task}-examples")
            expect(examples).to_contain_text(f"{task.capitalize()} examples")
            # Thumbnails only: no table of task and tile-size columns.
            expect(examples.locator("button.gallery-item img").first).to_be_visible()
            expect(examples.locator("table")).to_have_count(0)
            # Nothing inside the set scrolls sideways (the block itself clips its overflow, so its children are read).
            scrolling = examples.evaluate(
                "block => [block, ...block.querySelectorAll('*')]"
                ".filter(e => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible')"
                ".map(e => e.className)"
            )
            assert scrolling == [], f"{task} examples scroll sideways at {width} px: {scrolling}"
            box = examples.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= width, f"{task} examples leave the window: {box}"
        page_width, window_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert page_width <= window_width, f"the page is {page_width} px wide in a {window_width} px window"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"browser-{width}.png"), full_page=True)
    finally:
        context.close()


def test_corrupt_upload_shows_the_error(page, tmp_path):
    from playwright.sync_api import expect

    corrupt = tmp_path / "holiday.png"
    corrupt.write_bytes(os.urandom(4096))
    page.locator("#input-image input[type=file]").set_input_files(str(corrupt))
    page.locator("#restore-button").click()

    toast = page.locator(".toast-body").filter(has_text="'holiday.png' is not an image file of a format read here")
    expect(toast).to_be_visible()
    page.wait_for_timeout(800)  # let the toast finish sliding in before the screenshot
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-error.png"))
