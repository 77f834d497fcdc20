"""What a surgeon does in OHIF, as Playwright steps: open a study, open a series, read what is drawn."""

from __future__ import annotations

import time

import cv2
import numpy as np
from playwright.sync_api import Page

VIEWPORT = '[data-cy="viewport-grid"]'
# Every label OHIF draws over an image is an SVG <text> with one <tspan> per line, in the viewport's SVG layer.
LABELS_JS = f"""() => Array.from(document.querySelectorAll('{VIEWPORT} svg text'))
    .map(t => Array.from(t.querySelectorAll('tspan')).map(s => s.textContent.trim()).filter(s => s))
    .filter(lines => lines.length)"""


class OhifViewer:
    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.console: list[str] = []  # the browser's console, for a failure's report
        self.study_uid: str | None = None
        self._toured = False  # the first-visit tour dismissed (OHIF shows it once per browser context)
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.console.append(f"page error: {error}"))

    def open_study(self, study_uid: str) -> None:
        """The study in OHIF's basic viewer, once its first image is on screen (the first-visit tour dismissed
        as a new user would). Opening another series while that image is still loading can leave OHIF without
        it: the load is cancelled and never retried, so a user (and this test) waits for the picture."""
        self.study_uid = study_uid
        self.page.goto(f"{self.base_url}/viewer?StudyInstanceUIDs={study_uid}")
        skip = self.page.get_by_text("Skip all", exact=True)  # the first-visit tour, shown once per context
        try:
            skip.click(timeout=5_000 if self._toured else 90_000)
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: the tour was already dismissed
            if not self._toured:
                raise
        self._toured = True
        self.wait_for_image()

    def wait_for_image(self, timeout_s: float = 90) -> None:
        """Until a tenth of the viewport shows something brighter than the background (an image, not text)."""
        deadline = time.monotonic() + timeout_s
        while (self.viewport_pixels().max(axis=-1) > 40).mean() < 0.1:
            if time.monotonic() > deadline:
                raise AssertionError(f"no image on screen {timeout_s:.0f} s after opening the study")
            self.page.wait_for_timeout(250)

    def open_series(self, description: str) -> None:
        """Double-click the series' thumbnail in the study browser (what loads it into the viewport)."""
        self.page.get_by_text(description).first.dblclick(timeout=60_000)

    def open_report(self, description: str, timeout_s: float = 120, reopen_after_s: float = 30
                    ) -> list[list[str]]:
        """Open an SR series and return the labels drawn over its image. OHIF asks whether to track the
        report's measurements (to edit them); a surgeon who only reads it answers No. On a loaded machine OHIF
        3.13 sometimes shows the SR's image without drawing its annotations (seen about one run in four of
        this test; the console ends with "Measurement is preview, skipping"); a user double-clicks the report
        again (and this test reloads the study first, which a double-click alone did not always cure), every
        ``reopen_after_s`` until ``timeout_s``."""
        self.open_series(description)
        decline = self.page.locator('button[name="no-hydrate"]')
        started = reopened = time.monotonic()
        while not self.labels():
            if decline.count() and decline.first.is_visible():
                decline.first.click()
            now = time.monotonic()
            if now - started > timeout_s:
                raise AssertionError(f"no label drawn {timeout_s:.0f} s after opening {description!r}")
            if now - reopened > reopen_after_s:
                self.open_study(self.study_uid)
                self.open_series(description)
                reopened = time.monotonic()
            self.page.wait_for_timeout(200)
        self.page.wait_for_timeout(500)  # one more render pass: every annotation of the report is drawn by now
        return self.labels()

    def labels(self) -> list[list[str]]:
        """Each label box drawn over the image, as its lines of text."""
        return self.page.evaluate(LABELS_JS)

    def labels_on_screen(self) -> bool:
        """True when every label lies wholly inside the viewport (not cut off at its edge)."""
        pane = self.page.locator(VIEWPORT).bounding_box()
        boxes = [t.bounding_box() for t in self.page.locator(f"{VIEWPORT} svg text").all()]
        return bool(boxes) and all(
            b["x"] >= pane["x"] and b["y"] >= pane["y"] and b["x"] + b["width"] <= pane["x"] + pane["width"]
            and b["y"] + b["height"] <= pane["y"] + pane["height"] for b in boxes)

    def label_boxes(self) -> list[dict]:
        """The bounding box of each label drawn over the image (x, y, width, height in page pixels)."""
        return [t.bounding_box() for t in self.page.locator(f"{VIEWPORT} svg text").all()]

    def count(self, selector: str) -> int:
        return self.page.locator(f"{VIEWPORT} {selector}").count()

    def viewport_pixels(self) -> np.ndarray:
        """The viewport as the user sees it, RGB."""
        png = self.page.locator(VIEWPORT).screenshot()
        bgr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        return bgr[:, :, ::-1]


def pixels_near(rgb: np.ndarray, colour: tuple[int, int, int], tol: int = 40) -> int:
    return int(np.all(np.abs(rgb.astype(int) - np.array(colour)) <= tol, axis=-1).sum())
