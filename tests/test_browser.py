"""The service's page in a real browser (headless Chromium from Debian's packages, driven by
Selenium): a photo chosen on the page is shown with predict's caption and the alternatives."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from captioner.inference.captioning import ImageCaptioner
from captioner.inference.limits import ServiceLimits
from captioner.inference.model_card import CARD_JSON, file_md5
from tests.helpers.datasets import CORRUPT_BYTES
from tests.helpers.serving import SETTINGS, predicted, serving, trained_model

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="needs Debian's chromium and chromium-driver (`apt-get install chromium "
           "chromium-driver`; .ci/run installs them)")]
WAIT_S = 60
HEADLINE = "BLEU-4 0.228, METEOR 0.205, CIDEr 0.563 on 1,000 test images · published 2026-12-07"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The page of a service for a model trained on drawn pictures, open in headless Chromium."""
    folder = tmp_path_factory.mktemp("browser")
    model, pictures = trained_model(folder)
    (folder / CARD_JSON).write_text(json.dumps({"headline": {"text": HEADLINE}, "model": {
        "file": model.name, "md5": file_md5(model), "decoding": dataclasses.asdict(SETTINGS)}}))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    with serving(ImageCaptioner(model, SETTINGS), ServiceLimits()) as url:
        browser = webdriver.Chrome(options=options, service=Service(DRIVER))
        try:
            browser.get(url)
            yield browser, model, pictures, folder, url
        finally:
            browser.quit()


def shown(browser, count: int) -> list:
    """The page's results once `count` of them have an answer (newest first)."""
    def answered(driver):
        items = driver.find_elements(By.CSS_SELECTOR, "#results .result")
        done = [item for item in items
                if item.find_element(By.CLASS_NAME, "caption").text != "captioning…"]
        return items if len(items) == count and len(done) == count else False

    return WebDriverWait(browser, WAIT_S).until(answered)


def test_the_page_shows_the_model_card_s_headline(page):
    browser = page[0]
    WebDriverWait(browser, WAIT_S).until(
        lambda driver: driver.find_element(By.ID, "headline").is_displayed())
    assert browser.find_element(By.ID, "headline").text == HEADLINE


def test_chosen_photos_are_shown_with_predicts_captions_and_alternatives(page):
    browser, model, pictures, _, _ = page
    chosen = pictures[:2]
    browser.find_element(By.ID, "pick").send_keys("\n".join(str(path) for path in chosen))
    items = shown(browser, len(chosen))
    expected = predicted(model, chosen)
    by_name = {item.find_element(By.CLASS_NAME, "name").text: item for item in items}
    assert set(by_name) == {path.name for path in chosen}
    for name, item in by_name.items():
        assert item.find_element(By.CLASS_NAME, "caption").text == expected[name]
        alternatives = item.find_elements(By.CSS_SELECTOR, ".alternatives li")
        assert len(alternatives) == SETTINGS.beam_size
        assert alternatives[0].text.startswith(expected[name] + " ")
        thumbnail = item.find_element(By.TAG_NAME, "img")
        assert browser.execute_script("return arguments[0].naturalWidth", thumbnail) == 224
    assert "model.keras" in browser.find_element(By.ID, "model").text


def test_a_file_that_is_not_an_image_shows_the_services_error(page):
    browser, _, _, folder, _ = page
    before = len(browser.find_elements(By.CSS_SELECTOR, "#results .result"))
    notes = folder / "notes.jpg"
    notes.write_bytes(CORRUPT_BYTES)
    browser.find_element(By.ID, "pick").send_keys(str(notes))
    newest = shown(browser, before + 1)[0]
    caption = newest.find_element(By.CLASS_NAME, "caption")
    assert caption.text == "error 400: not an image Pillow can read"
    assert "error" in caption.get_attribute("class")


def test_the_page_works_as_localhost_too_under_its_own_content_policy(page):
    browser, model, pictures, _, url = page
    browser.get(url.replace("127.0.0.1", "localhost"))
    browser.find_element(By.ID, "pick").send_keys(str(pictures[2]))
    item = shown(browser, 1)[0]
    assert item.find_element(By.CLASS_NAME, "caption").text == predicted(model, pictures[2:3])[
        pictures[2].name]
    # The policy let the page's own script and style run and show the photo (a blob: URL).
    thumbnail = item.find_element(By.TAG_NAME, "img")
    assert browser.execute_script("return arguments[0].naturalWidth", thumbnail) == 224
    assert browser.execute_script(
        "return getComputedStyle(document.getElementById('pick')).display") == "none"
