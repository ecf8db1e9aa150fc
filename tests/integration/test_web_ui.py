"""The web UI over real HTTP (httpx against ``featureplane server``): cookie flags, CSRF and Origin
checks that refuse and change nothing, sign-out that ends the session server-side, the same 404 for a
workspace one holds no role on as for one that does not exist, escaping, and bad input named."""

from __future__ import annotations

import re

import httpx
import pytest
from account_server import ADMIN, ADMIN_PASSWORD, start_account_server
from web_ui_world import PASSWORD, SCRIPT, World, build_world

pytestmark = pytest.mark.integration
TOKEN = re.compile(r'name="csrf_token" value="([^"]*)"')


class Web:
    """One browser's cookies, talking to the server's pages."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, follow_redirects=False, timeout=30)

    def get(self, path: str, **options) -> httpx.Response:
        return self.http.get(path, **options)

    def token(self, path: str = "/ui/workspaces") -> str:
        page = self.get(path)
        assert page.status_code == 200, (path, page.status_code)
        return TOKEN.search(page.text).group(1)

    def post(self, path: str, data: dict, token: str | None = None, **options) -> httpx.Response:
        fields = dict(data)
        if token is not None:
            fields["csrf_token"] = token
        return self.http.post(path, data=fields, **options)

    def sign_in(self, user: str, password: str, **options) -> httpx.Response:
        return self.post(
            "/ui/sign-in", {"user": user, "password": password}, self.token("/ui/sign-in"), **options
        )

    @property
    def session(self) -> str:
        return self.http.cookies.get("featureplane_session", "")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("web") / "server"
    config = {"monitoring": {"dagster_url": "https://dagster.example.com/"}}
    server = start_account_server(root, config, server_args=("--proxy-headers",))
    try:
        yield build_world(server)
    finally:
        server.stop()


def signed_in(world: World, user: str) -> Web:
    web = Web(world.server.url)
    answer = web.sign_in(user, ADMIN_PASSWORD if user == ADMIN else PASSWORD)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/workspaces", answer.text
    return web


def test_signing_in_sets_an_httponly_samesite_cookie_and_secure_over_https(world):
    web = Web(world.server.url)
    assert web.get("/ui/workspaces").headers["location"] == "/ui/sign-in?next=%2Fui%2Fworkspaces"
    answer = web.sign_in(ADMIN, ADMIN_PASSWORD)
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("featureplane_session="))
    flags = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path", "max-age"} <= set(flags) and "secure" not in flags
    assert flags["samesite"].strip().lower() == "samesite=lax" and flags["path"].strip() == "Path=/"
    assert web.session.startswith("fps_")
    assert world.api("GET", "/api/v1/me", token=web.session)["name"] == ADMIN

    # Behind a TLS proxy (X-Forwarded-Proto, trusted with --proxy-headers) the cookies are Secure, so
    # this plain-http client does not send them back by itself.
    https = Web(world.server.url)
    https.http.headers["X-Forwarded-Proto"] = "https"
    form = https.get("/ui/sign-in")
    assert "secure" in form.headers["set-cookie"].lower()
    sign_in_cookie = form.headers["set-cookie"].split(";")[0]
    fields = {"user": ADMIN, "password": ADMIN_PASSWORD, "csrf_token": TOKEN.search(form.text).group(1)}
    answer = https.http.post("/ui/sign-in", data=fields, headers={"Cookie": sign_in_cookie})
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("featureplane_session="))
    assert "secure" in cookie.lower().replace(" ", "").split(";")


def test_pages_are_not_cached_framed_or_open_to_foreign_scripts(world):
    web = signed_in(world, "alice")
    for path in ("/ui/sign-in", "/ui/workspaces", "/ui/workspaces/prod", "/ui/workspaces/nope"):
        headers = web.get(path).headers
        assert headers["cache-control"] == "no-store", path
        assert headers["x-frame-options"] == "DENY", path
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "unsafe" not in csp


def test_wrong_password_and_bad_input_get_the_form_back_with_a_message(world):
    web = Web(world.server.url)
    wrong = web.sign_in("alice", "not-her-password")
    assert wrong.status_code == 401 and "wrong user name or password" in wrong.text
    assert "featureplane_session" not in web.http.cookies
    bad = web.sign_in("", "")
    assert bad.status_code == 400 and "user: a user name" in bad.text and "password: required" in bad.text
    events = world.api("GET", "/api/v1/audit?action=login.failed")
    assert any(e["target"] == "user:alice" for e in events)


def test_a_post_without_the_csrf_token_or_with_a_wrong_one_is_refused_and_changes_nothing(world):
    web = signed_in(world, "alice")
    before_roles, before_keys = world.roles("prod"), world.key_ids()
    grant = {"principal": "user:carol", "role": "editor"}
    for token in (None, "", "0" * 64, web.token()[:-1] + "x"):
        assert web.post("/ui/workspaces/prod/members", grant, token).status_code == 403
        assert web.post("/ui/workspaces/prod/keys", {"role": "consumer"}, token).status_code == 403
        assert web.post("/ui/service-accounts", {"name": "sneaky"}, token).status_code == 403
        refused = web.post("/ui/sign-out", {}, token)
        assert refused.status_code == 403 and "CSRF token" in refused.text
    # Another session's token is no good either.
    other = signed_in(world, "alice")
    assert web.post("/ui/workspaces/prod/members", grant, other.token()).status_code == 403
    assert world.roles("prod") == before_roles and world.key_ids() == before_keys
    accounts = world.api("GET", "/api/v1/service-accounts")
    assert "sneaky" not in {a["name"] for a in accounts}
    assert world.api("GET", "/api/v1/me", token=web.session)["name"] == "alice"  # still signed in
    # The sign-in form has its own token too.
    fresh = Web(world.server.url)
    assert fresh.post("/ui/sign-in", {"user": "alice", "password": PASSWORD}).status_code == 403


def test_a_cross_origin_post_is_refused_even_with_the_right_token(world):
    web = signed_in(world, "alice")
    token = web.token()
    grant = {"principal": "user:carol", "role": "editor"}
    evil = {"Origin": "http://evil.example"}
    refused = web.post("/ui/workspaces/prod/members", grant, token, headers=evil)
    assert refused.status_code == 403 and "Origin" in refused.text
    assert ("user:carol", "editor") not in world.roles("prod")
    same = web.post("/ui/workspaces/prod/members", grant, token, headers={"Origin": world.server.url})
    assert same.status_code == 303 and ("user:carol", "editor") in world.roles("prod")
    removed = web.post("/ui/workspaces/prod/members/remove", grant, token)
    assert removed.status_code == 303 and ("user:carol", "editor") not in world.roles("prod")


def test_signing_out_ends_the_session_on_the_server(world):
    web = signed_in(world, "vera")
    session = web.session
    answer = web.post("/ui/sign-out", {}, web.token())
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/sign-in"
    assert "featureplane_session" not in web.http.cookies
    status, _, _ = world.server.call("GET", "/api/v1/me", token=session)
    assert status == 401
    replay = Web(world.server.url)
    replay.http.cookies.set("featureplane_session", session)
    assert replay.get("/ui/workspaces/prod").status_code == 303


def test_a_user_without_a_role_sees_nothing_of_the_workspace_and_can_do_nothing_there(world):
    web = signed_in(world, "bob")  # owner of dev, no role on prod
    listed = web.get("/ui/workspaces").text
    assert "/ui/workspaces/dev" in listed and "prod" not in listed
    missing = web.get("/ui/workspaces/nowhere")
    assert missing.status_code == 404
    for page in ("", "/members", "/history", "/keys", "/audit"):
        answer = web.get(f"/ui/workspaces/prod{page}")
        assert answer.status_code == 404, page
        assert answer.text.replace("prod", "nowhere") == missing.text, page
    token = web.token()
    before_roles, before_keys = world.roles("prod"), world.key_ids()
    posts = [
        ("/ui/workspaces/prod/members", {"principal": "user:bob", "role": "owner"}),
        ("/ui/workspaces/prod/members", {"principal": "not a principal", "role": "owner"}),
        ("/ui/workspaces/prod/members/remove", {"principal": "user:alice", "role": "owner"}),
        ("/ui/workspaces/prod/members/remove", {"principal": "alice", "role": "king"}),
        ("/ui/workspaces/prod/keys", {"role": "consumer"}),
        ("/ui/workspaces/prod/keys", {"role": "root"}),
    ]
    keys = world.api("GET", "/api/v1/api-keys?workspace=prod")
    if keys:
        posts.append((f"/ui/workspaces/prod/keys/{keys[0]['id']}/revoke", {}))
    for path, data in posts:
        answer = web.post(path, data, token)
        assert answer.status_code == 404, (path, data, answer.status_code)
        assert "does not exist or you have no role on it" in answer.text
    assert world.roles("prod") == before_roles and world.key_ids() == before_keys
    assert web.get("/ui/audit").status_code == 403


def test_a_viewer_reads_members_but_may_not_manage_them(world):
    web = signed_in(world, "vera")
    members = web.get("/ui/workspaces/prod/members")
    assert members.status_code == 200 and "user:alice" in members.text and "Grant a role" not in members.text
    assert web.get("/ui/workspaces/prod/keys").status_code == 403
    assert web.get("/ui/workspaces/prod/audit").status_code == 403
    refused = web.post(
        "/ui/workspaces/prod/members", {"principal": "user:vera", "role": "owner"}, web.token()
    )
    assert refused.status_code == 403 and "needs the owner role" in refused.text
    assert ("user:vera", "owner") not in world.roles("prod")


def test_the_workspace_page_shows_views_with_their_markup_escaped_and_a_dagster_link(world):
    page = signed_in(world, "alice").get("/ui/workspaces/prod")
    assert page.status_code == 200
    assert SCRIPT not in page.text and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text
    assert 'href="https://dagster.example.com/assets/prod/amounts"' in page.text
    assert 'href="https://dagster.example.com/assets/prod/scoring"' in page.text
    for shown in ("scoring", "events", "raw.events", "user_id (string)", "every 1d", "offline and online"):
        assert shown in page.text, shown
    dev = signed_in(world, "bob").get("/ui/workspaces/dev")
    assert dev.status_code == 200 and "not materialized (development workspace)" in dev.text
    history = signed_in(world, "vera").get("/ui/workspaces/prod/history")
    assert history.status_code == 200 and "user:root" in history.text


def test_bad_form_input_gets_the_page_back_naming_the_field(world):
    web = signed_in(world, "alice")
    token = web.token()
    before = world.roles("prod")
    answer = web.post("/ui/workspaces/prod/members", {"principal": "carol", "role": "editor"}, token)
    assert answer.status_code == 400 and "principal: user:NAME or service_account:NAME" in answer.text
    answer = web.post("/ui/workspaces/prod/members", {"principal": "user:carol", "role": "king"}, token)
    assert answer.status_code == 400 and "role: one of the roles offered" in answer.text
    answer = web.post("/ui/workspaces/prod/keys", {"role": "consumer", "description": "x" * 501}, token)
    assert answer.status_code == 400 and "description: at most 500 characters" in answer.text
    answer = web.post("/ui/service-accounts", {"name": "<b>"}, token)
    assert answer.status_code == 400 and "name: letters, digits" in answer.text and "<b>" not in answer.text
    answer = web.post("/ui/workspaces/prod/keys/zz/revoke", {}, token)
    assert answer.status_code == 404
    assert world.roles("prod") == before


def test_an_api_key_is_shown_once_works_and_stops_working_when_revoked(world):
    web = signed_in(world, "alice")
    created = web.post("/ui/workspaces/prod/keys", {"role": "consumer", "description": "web"}, web.token())
    assert created.status_code == 303 and "?shown=" in created.headers["location"]
    shown = web.get(created.headers["location"])
    key = re.search(r'<code id="new-key">([^<]+)</code>', shown.text).group(1)
    assert world.api("GET", "/api/v1/workspaces/prod", token=key)["name"] == "prod"
    again = web.get(created.headers["location"])
    assert again.status_code == 200 and key not in again.text and 'id="new-key"' not in again.text
    key_id = next(
        k["id"] for k in world.api("GET", "/api/v1/api-keys?workspace=prod") if k["description"] == "web"
    )
    revoked = web.post(f"/ui/workspaces/prod/keys/{key_id}/revoke", {}, web.token())
    assert revoked.status_code == 303
    status, _, _ = world.server.call("GET", "/api/v1/workspaces/prod", token=key)
    assert status == 401
    actions = {e["action"] for e in world.api("GET", "/api/v1/audit?workspace=prod")}
    assert {"api_key.create", "api_key.revoke"} <= actions


def test_audit_pages_follow_the_apis_rules(world):
    admin = signed_in(world, ADMIN)
    assert admin.get("/ui/audit").status_code == 200
    owner = signed_in(world, "alice")
    assert owner.get("/ui/audit").status_code == 403
    log = owner.get("/ui/workspaces/prod/audit")
    assert log.status_code == 200 and "role.assign" in log.text


def test_a_service_accounts_key_made_in_the_ui_acts_with_the_roles_granted_to_it(world):
    web = signed_in(world, "alice")
    token = web.token()
    assert (
        web.post("/ui/service-accounts", {"name": "deployer", "description": "CD"}, token).status_code == 303
    )
    again = web.post("/ui/service-accounts", {"name": "deployer"}, token)
    assert again.status_code == 409 and "already exists" in again.text
    grant = {"principal": "service_account:deployer", "role": "editor"}
    assert web.post("/ui/workspaces/prod/members", grant, token).status_code == 303
    created = web.post("/ui/service-accounts/deployer/keys", {"description": "cd key"}, token)
    assert created.status_code == 303
    # Another user's session cannot collect it with the same link, nor use the link up.
    assert 'id="new-key"' not in signed_in(world, ADMIN).get(created.headers["location"]).text
    key = re.search(r'<code id="new-key">([^<]+)</code>', web.get(created.headers["location"]).text).group(1)
    assert world.api("GET", "/api/v1/workspaces/prod/history", token=key)
    status, _, _ = world.server.call("GET", "/api/v1/workspaces/dev", token=key)
    assert status == 404
    assert key not in web.get(created.headers["location"]).text
    assert web.post("/ui/service-accounts/nobody/keys", {}, token).status_code == 404


def test_sign_ins_through_the_page_are_rate_limited_like_the_apis(world):
    web = Web(world.server.url)
    for _ in range(5):
        assert web.sign_in("dave", "guess").status_code == 401
    limited = web.sign_in("dave", "guess")
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert "too many failed sign-ins" in limited.text
    assert any(e["target"] == "user:dave" for e in world.api("GET", "/api/v1/audit?action=login.limited"))


def test_an_unknown_page_is_a_not_found_page(world):
    assert Web(world.server.url).get("/ui/nothing/here").status_code == 303
    answer = signed_in(world, "alice").get("/ui/nothing/here")
    assert answer.status_code == 404 and "there is no page /ui/nothing/here" in answer.text
    assert answer.headers["content-type"].startswith("text/html")
