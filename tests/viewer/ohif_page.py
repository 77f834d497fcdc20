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
        self._listen(page)

    def _listen(self, page: Page) -> None:
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

    def open_report(self, description: str, timeout_s: float = 180, retry_after_s: float = 20
                    ) -> list[list[str]]:
        """Open an SR series and return the labels drawn over its image. OHIF asks whether to track the
        report's measurements (to edit them); a surgeon who only reads it answers No.

        In about half of the full test runs (never when this test ran alone, even on a CPU loaded three times
        over) OHIF 3.13 showed the SR's image without drawing its annotations, its console the same as when it
        does; neither double-clicking the report again nor reloading the study in the same tab cured it. So,
        every ``retry_after_s`` without a label, the test does what a user would try next, in turn: resize the
        window (which makes the viewer draw everything again), then open the study in a new tab."""
        self.open_series(description)
        decline = self.page.locator('button[name="no-hydrate"]')
        started = retried = time.monotonic()
        attempt = 0
        while not self.labels():
            if decline.count() and decline.first.is_visible():
                decline.first.click()
            now = time.monotonic()
            if now - started > timeout_s:
                raise AssertionError(f"no label drawn {timeout_s:.0f} s after opening {description!r} "
                                     f"({attempt} retries)")
            if now - retried > retry_after_s:
                attempt += 1
                if attempt % 2:
                    self._nudge_size()
                else:
                    self._new_tab()
                    self.open_series(description)
                retried = time.monotonic()
            self.page.wait_for_timeout(200)
        self.page.wait_for_timeout(500)  # one more render pass: every annotation of the report is drawn by now
        return self.labels()

    def _nudge_size(self) -> None:
        size = self.page.viewport_size
        self.page.set_viewport_size({"width": size["width"], "height": size["height"] - 40})
        self.page.wait_for_timeout(500)
        self.page.set_viewport_size(size)

    def _new_tab(self) -> None:
        """Close this tab and open the study in a new one (same browser context, so no first-visit tour)."""
        old, self.page = self.page, self.page.context.new_page()
        self.page.set_viewport_size(old.viewport_size)
        self._listen(self.page)
        self.console.append("--- new tab ---")
        old.close()
        self.open_study(self.study_uid)

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
