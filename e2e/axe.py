"""axe-core, the accessibility checker, for the browser tests only.

It comes from the npm registry (npm's own client, a pinned version) into
var/e2e-npm/, once per clone, the first time a test asks for it: nothing of it
is vendored into the portal or served by it.

Under the portal's Content-Security-Policy no inline script may run, so axe is
not added as a <script>: it is given to the browser context as an init script
(Playwright sends those through the DevTools protocol, which the policy does
not govern), and run with page.evaluate the same way. The page itself keeps
its strict policy, and the CSP test's listener still catches any refusal.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page

from cloudstate.config import REPO_ROOT

AXE_VERSION = "4.14.1"
PREFIX = REPO_ROOT / "var" / "e2e-npm"
SCRIPT = PREFIX / "node_modules" / "axe-core" / "axe.min.js"
NPM_TIMEOUT = 300


def axe_script() -> Path:
    """axe.min.js of AXE_VERSION, installed with npm if it is not there yet."""
    package = SCRIPT.parent / "package.json"
    if SCRIPT.exists() and f'"version": "{AXE_VERSION}"' in package.read_text():
        return SCRIPT
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is missing: run `make test-deps` (it installs Debian's npm)")
    PREFIX.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [npm, "install", "--prefix", str(PREFIX), "--no-audit", "--no-fund",
         "--no-save", "--no-package-lock", f"axe-core@{AXE_VERSION}"],
        capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False)
    if result.returncode != 0 or not SCRIPT.exists():
        pytest.fail(f"npm could not install axe-core {AXE_VERSION}: {result.stderr[-2000:]}")
    return SCRIPT


def give_axe(context: BrowserContext) -> None:
    """Make axe available in every page of ``context`` (see the module's note)."""
    context.add_init_script(path=str(axe_script()))


# Every rule axe has, every impact: the issue asks for zero violations of any kind.
RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ") + ": " + n.failureSummary),
  }));
}"""


def violations(page: Page) -> list[dict[str, Any]]:
    return page.evaluate(RUN_AXE)


def describe(found: list[dict[str, Any]]) -> str:
    return "; ".join(f"{v['id']} ({v['impact']}): {v['help']} at {v['nodes']}" for v in found)
