"""The HTML report opens in a real browser (headless Chromium), offline, with every figure
decoded and the headline visible.

Needs Debian's ``chromium`` package (``make test`` installs it where it can, via
``scripts/ensure-chromium.sh``); skipped with a reason elsewhere.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from enrich.report.html import write_report
from test_report import make_run, make_subsets, make_workspace

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="headless Chromium not found: install Debian's `chromium` package "
        "(`make test` tries scripts/ensure-chromium.sh; or `apt-get install chromium`)",
    ),
]

# Injected into a *copy* of the report (the report itself has no scripts): after the load
# event, record on each <img> whether the browser decoded it and at what size.
PROBE = (
    "<script>window.addEventListener('load', function () {"
    "document.querySelectorAll('img').forEach(function (i) {"
    "i.setAttribute('data-decoded', i.complete && i.naturalWidth > 0 ? 'yes' : 'no');"
    "i.setAttribute('data-size', i.naturalWidth + 'x' + i.naturalHeight);});"
    "document.body.setAttribute('data-probed', 'yes');});</script>"
)


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        # Any network request would go to a dead proxy: the page must not need one.
        "--proxy-server=127.0.0.1:9",
        "--virtual-time-budget=5000",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


class _Collect(HTMLParser):
    """The <img> attributes and the visible text of the dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict[str, str | None]] = []
        self.text: list[str] = []
        self.body: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.imgs.append(dict(attrs))
        elif tag == "body":
            self.body = dict(attrs)

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.text.append(" ".join(data.split()))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    ws, manifest = make_workspace(tmp)
    run = make_run(
        ws / "runs", subsets=make_subsets(manifest), name="quick", meta={"workspace": str(ws)}
    )
    return write_report(run)


def test_report_loads_offline_with_figures_and_headline(report: Path, tmp_path: Path) -> None:
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"))
    res = _chromium(tmp_path, "--dump-dom", probe.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    dom = _Collect()
    dom.feed(res.stdout)
    assert dom.body.get("data-probed") == "yes", "the page did not finish loading"
    # Figures 3, 5, 4, 1 and the two image grids: all data: URIs, all decoded by the browser.
    assert len(dom.imgs) == 6
    for img in dom.imgs:
        assert (img.get("src") or "").startswith("data:image/png;base64,")
        assert img.get("data-decoded") == "yes", img.get("alt")
        w, h = (int(v) for v in (img.get("data-size") or "0x0").split("x"))
        assert w > 200 and h > 150
        assert img.get("alt")
    text = " ".join(dom.text)
    assert "The answer: how many images need labels?" in text
    assert re.search(r"ENRICH 50% of the training set \(24 of 48 images\) was enough", text)
    assert "No smaller subset we tried matched the full training set" in text
    assert "Performance vs number of labeled images (Fig. 3)" in text


def test_report_screenshot_is_not_blank(report: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "report.png"
    res = _chromium(tmp_path, "--window-size=1100,1800", f"--screenshot={shot}", report.as_uri())
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape == (1800, 1100)
    # Text and figures make a busy page: many distinct gray levels, not a blank or error page.
    assert img.std() > 20
    assert len(np.unique(img)) > 50


# Headless Chromium windows are at least 500 px wide, so the phone is an iframe of the
# phone's width (its own viewport: the page's media queries see the phone width). After it
# loads, record the page's width against the frame's, and each figure's shown vs natural width.
PHONE_PAGE = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="phone" style="border:0;width:{width}px;height:{height}px" srcdoc="{srcdoc}"></iframe>
<script>document.getElementById('phone').addEventListener('load', function () {{
  var w = this.contentWindow, d = this.contentDocument, b = document.body;
  b.setAttribute('data-scroll-width', d.documentElement.scrollWidth);
  b.setAttribute('data-inner-width', w.innerWidth);
  var out = [];
  d.querySelectorAll('img').forEach(function (i) {{
    out.push(i.getBoundingClientRect().width + 'x' + i.naturalWidth + 'x' + i.alt);}});
  b.setAttribute('data-imgs', out.join('|'));
  b.setAttribute('data-probed', 'yes');}});</script></body></html>"""


@pytest.mark.parametrize("width", [360, 420])
def test_report_fits_a_phone_and_its_figure_text_stays_readable(
    report: Path, tmp_path: Path, width: int
) -> None:
    import html

    from PIL import Image

    from enrich.report.plots import DPI, MIN_FONT_PT

    page = tmp_path / "phone.html"
    source = html.escape(report.read_text(encoding="utf-8"), quote=True)
    page.write_text(PHONE_PAGE.format(width=width, height=2400, srcdoc=source), encoding="utf-8")
    res = _chromium(tmp_path, "--window-size=600,2400", "--dump-dom", page.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    dom = _Collect()
    dom.feed(res.stdout)
    assert dom.body.get("data-probed") == "yes", "the page did not finish loading"
    inner = float(dom.body["data-inner-width"] or 0)
    assert inner == width
    # Nothing sticks out sideways (wide tables scroll inside their own box).
    assert float(dom.body["data-scroll-width"] or 0) <= inner
    imgs = (dom.body.get("data-imgs") or "").split("|")
    assert len(imgs) == 6
    smallest = MIN_FONT_PT / 72.0 * DPI  # the smallest figure text, in PNG pixels
    for entry in imgs:
        shown_s, natural_s, alt = entry.split("x", 2)
        shown, natural = float(shown_s), float(natural_s)
        assert 0 < shown <= inner - 20, alt  # page margins of at least 10 px each side
        # Shrunk to the phone's width, the smallest text is still about 9 px tall.
        assert smallest * shown / natural >= 9.0, (alt, shown, natural)
    # A screenshot of the phone's view, to look at (kept in the test's tmp folder).
    shot = tmp_path / f"phone-{width}.png"
    res = _chromium(tmp_path, "--window-size=600,2400", f"--screenshot={shot}", page.as_uri())
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    view = np.asarray(Image.open(shot).convert("L"), dtype=float)[:, :width]
    assert view.std() > 20 and len(np.unique(view)) > 50
