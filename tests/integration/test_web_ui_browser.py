"""The web UI in a real browser: Debian's Chromium driven by Playwright. An admin signs in, opens a
workspace, grants a role, creates a service account and an API key (read once from the page, working
against the API, gone on reload), revokes it, and signs out; a user without a role on the workspace
neither sees it nor reaches it by URL. Every page is saved as a screenshot under the test's temporary
directory; with FEATUREPLANE_UPDATE_SCREENSHOTS=1 one of each kind also goes to docs/images/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from account_server import ADMIN, ADMIN_PASSWORD, start_account_server
from web_ui_world import PASSWORD, build_world

pytestmark = pytest.mark.integration
CHROMIUM = Path("/usr/bin/chromium")
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
# The screenshots the README shows, by the name each page is saved under.
DOCUMENTED = {
    "workspaces": "web-workspaces.png",
    "workspace": "web-workspace.png",
    "members": "web-members.png",
    "keys-new": "web-keys.png",
    "service-accounts": "web-service-accounts.png",
    "history": "web-history.png",
}


@pytest.fixture
def chromium():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: scripts/system_packages.sh installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()


def test_an_admin_manages_access_in_the_browser_and_an_outsider_sees_nothing(chromium, tmp_path):
    from playwright.sync_api import expect

    server = start_account_server(tmp_path / "server")
    try:
        world = build_world(server, markup=False)
        shots = tmp_path / "screenshots"
        shots.mkdir()
        context = chromium.new_context(viewport={"width": 1280, "height": 800})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
        page = context.new_page()

        def shot(name: str) -> None:
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

        def sign_in(user: str, password: str) -> None:
            page.goto(f"{server.url}/ui/workspaces")
            expect(page).to_have_url(f"{server.url}/ui/sign-in?next=%2Fui%2Fworkspaces")
            page.get_by_label("User name").fill(user)
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            expect(page).to_have_url(f"{server.url}/ui/workspaces")

        page.goto(f"{server.url}/ui/sign-in")
        shot("sign-in")
        sign_in(ADMIN, ADMIN_PASSWORD)
        expect(page.get_by_role("link", name="prod")).to_be_visible()
        expect(page.get_by_role("link", name="dev")).to_be_visible()
        shot("workspaces")

        page.get_by_role("link", name="prod").click()
        expect(page.get_by_role("heading", name="Workspace prod")).to_be_visible()
        expect(page.get_by_role("link", name="asset prod/amounts")).to_have_attribute(
            "href", "http://127.0.0.1:3000/assets/prod/amounts"
        )
        shot("workspace")
        page.get_by_role("link", name="Apply history").click()
        expect(page.get_by_role("cell", name="user:root")).to_be_visible()
        shot("history")

        # Grant carol a role on prod.
        page.get_by_role("link", name="Members").click()
        page.get_by_label("Principal").fill("user:carol")
        page.get_by_label("Role").select_option("viewer")
        page.get_by_role("button", name="Grant").click()
        expect(page.get_by_role("row").filter(has_text="user:carol")).to_contain_text("viewer")
        assert ("user:carol", "viewer") in world.roles("prod")
        shot("members")

        # A service account.
        page.get_by_role("link", name="Service accounts").click()
        page.get_by_label("Name").fill("ci")
        page.get_by_label("Description").fill("the CI pipeline")
        page.get_by_role("button", name="Create", exact=True).click()
        expect(page.get_by_role("row").filter(has_text="the CI pipeline")).to_be_visible()
        assert "ci" in {a["name"] for a in world.api("GET", "/api/v1/service-accounts")}
        shot("service-accounts")

        # An API key, shown once.
        page.goto(f"{server.url}/ui/workspaces/prod/keys")
        shot("keys")
        page.get_by_label("Description").fill("lookups from the browser test")
        page.get_by_role("button", name="Create key").click()
        key = page.locator("#new-key").inner_text()
        assert key.startswith("fpk_")
        page.get_by_role("button", name="Copy").click()
        expect(page.get_by_role("button", name="Copied")).to_be_visible()
        assert page.evaluate("navigator.clipboard.readText()") == key
        shot("keys-new")
        assert world.api("GET", "/api/v1/workspaces/prod", token=key)["name"] == "prod"
        page.reload()
        expect(page.locator("#new-key")).to_have_count(0)
        assert key not in page.content()

        row = page.get_by_role("row").filter(has_text="lookups from the browser test")
        row.get_by_role("button", name="Revoke").click()
        expect(page.get_by_role("row").filter(has_text="lookups from the browser test")).to_contain_text(
            "revoked"
        )
        status, _, _ = server.call("GET", "/api/v1/workspaces/prod", token=key)
        assert status == 401
        page.get_by_role("link", name="Audit log").first.click()
        expect(page.get_by_role("cell", name="api_key.revoke").first).to_be_visible()
        shot("audit")

        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(f"{server.url}/ui/sign-in")
        page.goto(f"{server.url}/ui/workspaces/prod")
        expect(page).to_have_url(f"{server.url}/ui/sign-in?next=%2Fui%2Fworkspaces%2Fprod")

        # bob owns dev and holds no role on prod.
        sign_in("bob", PASSWORD)
        expect(page.get_by_role("link", name="dev")).to_be_visible()
        expect(page.get_by_role("link", name="prod")).to_have_count(0)
        answer = page.goto(f"{server.url}/ui/workspaces/prod/members")
        assert answer is not None and answer.status == 404
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        expect(page.get_by_text("workspace 'prod' does not exist or you have no role on it")).to_be_visible()
        shot("not-found")
        context.close()
    finally:
        server.stop()

    saved = {p.stem for p in shots.glob("*.png")}
    assert saved >= set(DOCUMENTED) | {"sign-in", "audit", "not-found"}
    if os.environ.get("FEATUREPLANE_UPDATE_SCREENSHOTS") == "1":
        IMAGES.mkdir(parents=True, exist_ok=True)
        for name, target in DOCUMENTED.items():
            shutil.copyfile(shots / f"{name}.png", IMAGES / target)
