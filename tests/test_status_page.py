"""The landing page as a person sees it: rendered by real headless Chromium."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from PIL import Image, ImageStat

from tests.exporter_process import running_exporter
from tests.tools import require_tool

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_status_page_renders_pools_and_recent_jobs(tmp_path: Path) -> None:
    binary = require_tool("chromium")
    with running_exporter("--demo", workdir=tmp_path) as demo:
        demo.scrape()
        url = f"{demo.base_url}/"
        dom = chromium(binary, tmp_path / "profile-dom", "--dump-dom", url).stdout
        screenshot = tmp_path / "status.png"
        chromium(
            binary,
            tmp_path / "profile-shot",
            f"--screenshot={screenshot}",
            "--window-size=1280,1000",
            url,
        )
    pool_rows = re.findall(r"<tr><td>([\w-]+_\w+)</td>", dom)
    assert sorted(pool_rows) == sorted(
        [
            "eu-west-1_Cust0mers1",
            "eu-west-1_Partn3rs22",
            "us-east-1_Staff00333",
            "ap-southeast-2_Legacy4",
            "eu-west-1_Retired99",
        ]
    )
    assert dom.count('<td class="ok">ok in') == 4
    assert '<td class="fail">failed</td><td>ResourceNotFound: ' in dom
    job_rows = re.findall(r"<tr><td>(customers|partners|staff|legacy-migration)</td>", dom)
    assert len(job_rows) >= 4
    image = Image.open(screenshot).convert("L")
    assert image.size == (1280, 1000)
    # a rendered table: dark text and borders on a light page, not a blank or error page
    histogram = image.histogram()
    dark = sum(histogram[:100]) / (image.size[0] * image.size[1])
    assert 0.005 < dark < 0.3
    assert ImageStat.Stat(image).stddev[0] > 20
