"""The HTML run report in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``).

Each report of a toy run through ``bps submit --wms local`` (one job failing) and
``supertask run`` is loaded from its file, with the network switched off, and the
test asserts on what the browser renders: no console errors, one timeline bar per
job that ran, every label and its counts, and a screenshot that is not blank.
Skipped, with the reason, where the browser or its driver is not installed
(``.ci/run`` installs both).
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.toy_pipeline import ToyPipeline, submit_dir_of

from bps.cli import main as bps_main
from bps.wms.base import read_run_record
from supertask.cli.main import main as supertask_main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
Image = pytest.importorskip("PIL.Image", reason="pillow is not installed (pip install -e '.[test]')")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="headless Chromium is not installed: apt-get install chromium chromium-driver",
    ),
]

RUN = "u/test/browser"
TOY = ToyPipeline(run=RUN, detectors=(1, 2, 3, 4, 5, 6), seed_scale=10, multiplier=2)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1200,1600")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    # nothing may be fetched: the page must work offline
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0},
    )
    yield driver
    driver.quit()


def load(browser, page: Path) -> list[dict]:
    """Open ``page``; the browser's console messages of that load."""
    browser.get_log("browser")  # drop what an earlier page logged
    browser.get(page.as_uri())
    assert browser.execute_script("return document.body.getAttribute('data-ready')") == "1"
    return browser.get_log("browser")


def assert_not_blank(browser, selector: str) -> None:
    """The element's screenshot has many colours: something was drawn, not an empty box."""
    from selenium.webdriver.common.by import By

    png = browser.find_element(By.CSS_SELECTOR, selector).screenshot_as_png
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert image.width > 100 and image.height > 10
    assert len(colours) > 5, f"{selector} rendered {len(colours)} colours: blank"
    most = max(n for n, _ in colours)
    assert most < 0.97 * image.width * image.height, f"{selector} is nearly one colour"


def rendered_counts(browser) -> dict[str, dict[str, str]]:
    """Label -> column -> text, as the counts table shows it."""
    return browser.execute_script(
        """
        var heads = Array.from(document.querySelectorAll('table.counts thead th')).map(function (th) {
            return th.textContent.trim(); });
        var out = {};
        document.querySelectorAll('table.counts tbody tr[data-label]').forEach(function (tr) {
            var row = {};
            Array.from(tr.children).forEach(function (td, i) { row[heads[i]] = td.textContent.trim(); });
            out[tr.getAttribute('data-label')] = row;
        });
        return out;
        """
    )


def test_bps_report_of_a_local_run_with_a_failure_renders_in_chromium(browser, tmp_path, monkeypatch):
    from selenium.webdriver.common.by import By

    toy = TOY.set_up(tmp_path, monkeypatch, compute_site="local")
    config = toy.submit_yaml("failing", fail_detector=4, retry={"retries": 0})
    CliRunner().invoke(bps_main, ["submit", str(config), "-j", "2"])
    submit_dir = submit_dir_of(config)
    html = tmp_path / "report.html"
    result = CliRunner().invoke(bps_main, ["report", str(submit_dir), "--html", str(html)])
    assert result.exit_code == 0, result.output

    console = load(browser, html)
    assert [m for m in console if m["level"] in ("SEVERE", "ERROR")] == []
    ran = {name for name, info in read_run_record(submit_dir)["jobs"].items() if info.get("start")}
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.timeline rect.bar")
    assert sorted(b.get_attribute("data-job") for b in bars) == sorted(ran)
    assert all(b.size["width"] >= 1 and b.size["height"] >= 1 for b in bars)  # drawn, not collapsed
    counts = rendered_counts(browser)
    assert counts["make"]["succeeded"] == "5" and counts["make"]["failed"] == "1"
    assert counts["total"]["skipped"] == "1"
    assert set(counts) == {"make", "total", "finalize"}
    labels = {
        n.get_attribute("data-label") for n in browser.find_elements(By.CSS_SELECTOR, "svg.pipeline g.node")
    }
    assert labels == {"make", "total", "finalize"}
    failures = browser.find_element(By.ID, "failures").text
    assert "Failures" in failures
    assert "make fails on purpose" in browser.find_element(By.CSS_SELECTOR, "[data-failure]").text
    for selector in ("svg.timeline", "svg.pipeline", "table.counts", "svg.distribution", "table.memory"):
        assert_not_blank(browser, selector)
    # per task label, the request beside what its quanta used: six make attempts measured, total never ran
    memory_rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('table.memory tbody tr')).map(function (tr) {"
        " return Array.from(tr.children).map(function (td) { return td.textContent.trim(); }); });"
    )
    assert [row[:3] for row in memory_rows] == [["make", "6", "2048"]]
    # the script works: hovering a legend entry dims the other labels' bars
    from selenium.webdriver import ActionChains

    ActionChains(browser).move_to_element(
        browser.find_element(By.CSS_SELECTOR, '.legend [data-label="finalize"]')
    ).perform()
    dimmed = [b for b in bars if "dim" in (b.get_attribute("class") or "")]
    assert len(dimmed) == len(bars) - 1


def test_supertask_run_report_renders_in_chromium(browser, tmp_path, monkeypatch):
    from selenium.webdriver.common.by import By

    toy = TOY.set_up(tmp_path, monkeypatch, compute_site="local")
    graph = TOY.write_graph(tmp_path / "g.qgraph", toy.seeds)
    html = tmp_path / "run.html"
    result = CliRunner().invoke(
        supertask_main, ["run", str(toy.repo), "--qgraph", str(graph), "-j", "2", "--html", str(html)]
    )
    assert result.exit_code == 0, result.output

    console = load(browser, html)
    assert [m for m in console if m["level"] in ("SEVERE", "ERROR")] == []
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.timeline rect.bar")
    assert len(bars) == len(TOY.detectors) + 1  # one per quantum
    counts = rendered_counts(browser)
    assert counts["make"]["succeeded"] == "6" and counts["total"]["succeeded"] == "1"
    assert "Peak memory per quantum" in browser.find_element(By.TAG_NAME, "body").text
    for selector in ("svg.timeline", "svg.pipeline", "svg.distribution"):
        assert_not_blank(browser, selector)
    browser.save_screenshot(str(tmp_path / "page.png"))


def test_report_of_the_demo_pipeline_on_a_demo_tile_renders_in_chromium(browser, tmp_path):
    """The real demo: five labels, quanta with no work, numpy-heavy tasks in long-lived workers."""
    from selenium.webdriver.common.by import By

    from supertask.cli.main import main as supertask_main

    repo = tmp_path / "repo"
    pipeline = Path(__file__).resolve().parents[1] / "examples" / "demo_pipeline.yaml"
    runner = CliRunner()
    made = runner.invoke(supertask_main, ["demo-data", str(repo), "--exposures", "2"])
    assert made.exit_code == 0, made.output
    html = tmp_path / "demo.html"
    result = runner.invoke(
        supertask_main,
        ["run", str(repo), "-p", str(pipeline), "-i", "DemoCam/defaults", "-o", "u/t/demo"]
        + ["--where", "tract = 0", "-j", "2", "--html", str(html)],
    )
    assert result.exit_code == 0, result.output

    console = load(browser, html)
    assert [m for m in console if m["level"] in ("SEVERE", "ERROR")] == []
    # a quantum a worker ran left its log: as many bars as logs
    logs = list((repo / "u" / "t" / "demo" / "logs").rglob("*.log"))
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.timeline rect.bar")
    assert len(bars) == len(logs) > 50
    counts = rendered_counts(browser)
    assert set(counts) == {"isr", "calibrate", "makeWarp", "assembleCoadd", "detectCoadd"}
    assert counts["isr"]["succeeded"] == counts["calibrate"]["succeeded"] != "0"
    assert all(
        row["total"] == str(int(row["succeeded"]) + int(row.get("no work", 0))) for row in counts.values()
    )
    boxes = browser.find_elements(By.CSS_SELECTOR, "svg.pipeline g.node")
    assert len(boxes) == 5 and len(browser.find_elements(By.CSS_SELECTOR, "svg.pipeline path.edge")) == 4
    for selector in ("svg.timeline", "svg.pipeline", "svg.distribution", "table.counts"):
        assert_not_blank(browser, selector)
