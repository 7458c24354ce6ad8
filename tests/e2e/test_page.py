"""The web page at `/`, in a real browser: Debian's headless Chromium driven by Playwright.

A person picks a photo, sees result thumbnails with scores and names, clicks one to see photos like
it, opens an original; on a phone-sized screen the grid fits; with a token, the login form lets them
in. No JavaScript error may occur along the way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from served import Service

from conftest import CALIBRATION_PHOTOS, cli_env, make_slideshow, photo, run_script

pytestmark = pytest.mark.browser  # tier: CONTRIBUTING.md "The test tiers"

playwright_api = pytest.importorskip("playwright.sync_api")
expect, sync_playwright = playwright_api.expect, playwright_api.sync_playwright

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    found = os.environ.get("EDGE_SEARCH_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        reason = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("EDGE_SEARCH_TEST_REQUIRE_BROWSER"):
            pytest.fail(reason + "; CI requires the browser test to run")
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


def open_page(browser, url: str, errors: list, **context_options):
    context = browser.new_context(**context_options)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on("console", lambda msg: errors.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("response", lambda r: errors.append(f"HTTP {r.status} for {r.url}") if r.status >= 400 else None)
    page.goto(url)
    return context, page


def test_pick_a_photo_see_results_click_through_and_open_the_original(browser, indexed, tmp_path):
    env, photos = indexed
    service = Service(env)
    errors: list[str] = []
    try:
        service.wait_ready()
        context, page = open_page(browser, service.base + "/", errors, viewport={"width": 1280, "height": 900})
        page.wait_for_selector("#status:has-text('12 photos')")
        assert page.is_visible("#warning") == service.health()["random_weights"]  # the tiny test bundle says no
        status = page.locator("#status")  # the engine as a person names it, the provider's own name on hover
        assert "Provider" not in status.inner_text() and " · CPU · " in status.inner_text()
        assert status.get_attribute("title") == f"{service.health()['provider']}, {service.health()['precision']} graph"

        page.set_input_files("#file", str(photos / "img02.webp"))
        page.wait_for_selector("#results .hit .score")  # the search's results, not the start page's
        hits = page.locator("#results .hit")
        assert hits.count() == 12  # 24 asked, 12 indexed
        assert hits.first.locator(".name").inner_text() == "photos/img02.webp"  # the parent folder too
        assert float(hits.first.locator(".score").inner_text()) == pytest.approx(1.0, abs=1e-3)
        assert page.inner_text("#query-name") == "img02.webp"
        for thumbnail in page.locator("#results img").all():
            expect(thumbnail).to_have_js_property("complete", True)
        assert page.evaluate("[...document.querySelectorAll('#results img')].every(i => i.naturalWidth > 0)")

        second = hits.nth(1)
        name = second.locator(".name").get_attribute("title")
        second.locator("a.similar").click()
        page.wait_for_url("**/#similar/*")
        expect(page.locator("#query-name")).to_have_text("/".join(name.split("/")[-2:]))  # folder/name
        expect(page.locator("#query-name")).to_have_attribute("title", name)  # the whole path on hover
        expect(page.locator("#results .hit")).to_have_count(11)  # itself left out
        assert name not in [n.get_attribute("title") for n in page.locator("#results .name").all()]

        original = page.locator("#results .hit a.original").first
        assert original.get_attribute("target") == "_blank"
        response = page.request.get(service.base + original.get_attribute("href"))
        path = Path(page.locator("#results .hit .name").first.get_attribute("title"))
        assert response.status == 200 and response.body() == path.read_bytes()

        page.go_back()
        page.wait_for_url(service.base + "/")
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        context.close()
    finally:
        service.stop()
    assert errors == []


def test_the_page_fits_a_phone_screen(browser, indexed):
    env, photos = indexed
    with phone_page(browser, env) as (_, page):
        long_name = photos / (
            "a-photo-with-a-very-long-file-name-as-cameras-and-phones-like-to-write-them-" * 2 + ".bmp"
        )
        long_name.write_bytes((photos / "img03.bmp").read_bytes())
        page.set_input_files("#file", str(long_name))
        page.wait_for_selector("#results .hit .score")  # the search's results, not the start page's
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
        columns = page.evaluate(
            "getComputedStyle(document.querySelector('#results')).gridTemplateColumns.split(' ').length"
        )
        assert columns == 2


def test_a_bad_file_shows_the_reason_on_the_page(browser, indexed, tmp_path):
    env, _ = indexed
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    service = Service(env)
    errors: list[str] = []
    try:
        service.wait_ready()
        context, page = open_page(browser, service.base + "/", errors)
        page.set_input_files("#file", str(broken))
        page.wait_for_selector("#message.error")
        assert "cannot be searched" in page.inner_text("#message") and page.locator("#results .hit").count() == 0
        expect(page.locator("#query-image")).to_be_hidden()  # no broken-image icon beside the error
        page.reload()  # the failed search is not what the page comes back to: the start page, saying so
        expect(page.locator("#message")).to_contain_text("did not finish: choose the photo again")
        expect(page.locator("#query")).to_be_hidden()
        expect(page.locator("#results .hit")).to_have_count(12)
        context.close()
    finally:
        service.stop()
    assert [e for e in errors if "400" not in e] == []  # the upload's 400 (logged twice); nothing else


def test_with_a_token_the_login_form_lets_a_person_in(browser, indexed):
    env, photos = indexed
    service = Service(env, "--token", "correct horse")
    errors: list[str] = []
    try:
        service.wait_ready(headers={"Authorization": "Bearer correct horse"})
        context, page = open_page(browser, service.base + "/", errors)
        assert page.url.endswith("/login")
        page.fill("#token", "wrong")
        page.click("button[type=submit]")
        assert "not the one" in page.inner_text(".error")
        page.fill("#token", "correct horse")
        page.click("button[type=submit]")
        page.wait_for_url(service.base + "/")
        page.set_input_files("#file", str(photos / "img01.png"))
        page.wait_for_selector("#results .hit .score")  # the search's results, not the start page's
        assert page.locator("#results .hit").first.locator(".name").inner_text() == "photos/img01.png"
        cookie = next(c for c in context.cookies() if c["name"] == "edge_search_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert "correct horse" not in cookie["value"]  # a session value derived from the token, not the token
        page.click("#logout button")
        page.wait_for_url(service.base + "/login")
        assert not [c for c in context.cookies() if c["name"] == "edge_search_session"]
        context.close()
    finally:
        service.stop()
    assert [e for e in errors if "401" not in e] == []  # the wrong token's 401 (logged twice); nothing else


def test_control_characters_in_names_are_shown_not_obeyed(browser, indexed):
    env, photos = indexed
    reversing = "photo\u202egpj.png"  # shown as "photogpj.png" reversed if the page obeyed U+202E
    (photos / reversing).write_bytes((photos / "img01.png").read_bytes())
    (photos / "img01.png").unlink()
    assert run_script("edge-search", "index", env=env).returncode == 0
    service = Service(env, "--no-watch")
    errors: list[str] = []
    try:
        service.wait_ready()
        context, page = open_page(browser, service.base + "/", errors)
        page.set_input_files("#file", str(photos / reversing))
        page.wait_for_selector("#results .hit .score")
        name = page.locator("#results .hit").first.locator(".name").inner_text()
        assert name == "photos/photo⟨U+202E⟩gpj.png"
        context.close()
    finally:
        service.stop()
    assert errors == []


def test_the_duplicates_view_lists_groups_with_their_keeper(browser, indexed, tmp_path):
    env, photos = indexed
    (photos / "copy-of-img02.webp").write_bytes((photos / "img02.webp").read_bytes())
    assert run_script("edge-search", "index", env=env).returncode == 0
    service = Service(env, "--no-watch")
    errors: list[str] = []
    try:
        service.wait_ready()
        status, api, _ = service.request("/api/dupes?threshold=1.0")
        assert status == 200 and [g["kind"] for g in api["groups"]] == ["exact"]
        context, page = open_page(browser, service.base + "/", errors)
        page.click("#dupes-link")
        page.wait_for_selector("#groups .group")
        assert page.is_hidden("#results")
        group = page.locator("#groups .group").filter(has_text="copy-of-img02.webp")
        assert {"photos/copy-of-img02.webp", "photos/img02.webp"} <= {
            n.inner_text() for n in group.locator(".name").all()
        }
        assert (
            group.locator(".member.keep").count() == 1 and "keeper" in group.locator(".member.keep .badge").inner_text()
        )
        group.locator(".member a[href^='#similar/']").first.click()
        page.wait_for_selector("#results .hit .score")  # the search's results, not the start page's
        assert page.is_hidden("#groups") and page.is_visible("#results")
        context.close()
    finally:
        service.stop()
    assert errors == []


def test_a_large_duplicates_group_wraps_on_a_narrow_screen_and_transparent_pictures_show_a_checkerboard(
    browser, indexed
):
    env, photos = indexed
    for i in range(12):  # 13 identical files: one group, wider than any phone
        (photos / f"again-{i:02d}.webp").write_bytes((photos / "img02.webp").read_bytes())
    overlay = np.zeros((90, 120, 4), dtype=np.uint8)
    overlay[..., :3], overlay[::6, :, 3] = 255, 255  # white lines on nothing: blank over white
    Image.fromarray(overlay, "RGBA").save(photos / "overlay.png")
    (photos / "overlay-copy.png").write_bytes((photos / "overlay.png").read_bytes())
    assert run_script("edge-search", "index", env=env).returncode == 0
    service = Service(env, "--no-watch")
    errors: list[str] = []
    try:
        service.wait_ready()
        context, page = open_page(browser, service.base + "/#dupes", errors, viewport={"width": 600, "height": 900})
        page.wait_for_selector("#groups .group")
        big = page.locator("#groups .group").filter(has_text="again-00.webp")
        boxes = [m.bounding_box() for m in big.locator(".member").all()]
        assert len(boxes) == 13 and max(b["x"] + b["width"] for b in boxes) <= 600  # nothing off the screen
        assert len({round(b["y"]) for b in boxes}) >= 4  # it wrapped
        assert [p.inner_text() for p in big.locator(".pixels").all()][1:] == ["identical bytes"] * 12
        transparent = page.locator("#groups .group").filter(has_text="overlay.png").locator("img").first
        assert "linear-gradient" in transparent.evaluate("img => getComputedStyle(img).backgroundImage")
        status, thumb, kind = service.request(transparent.get_attribute("src"))
        assert status == 200 and kind == "image/webp" and thumb[:4] == b"RIFF"  # its alpha kept, not flattened
        context.close()
    finally:
        service.stop()
    assert errors == []


@contextlib.contextmanager
def desktop_page(browser, env: dict) -> Iterator[tuple[Service, object]]:
    """The installed service and a desktop-sized page on it; no JavaScript or HTTP error may occur meanwhile."""
    with served_page(browser, env, viewport={"width": 1280, "height": 900}) as opened:
        yield opened


@contextlib.contextmanager
def phone_page(browser, env: dict) -> Iterator[tuple[Service, object]]:
    """The same on a phone: 390 px wide, touch, three device pixels per CSS pixel."""
    phone = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True, "has_touch": True}
    with served_page(browser, env, **phone) as opened:
        yield opened


@contextlib.contextmanager
def served_page(browser, env: dict, **context_options) -> Iterator[tuple[Service, object]]:
    service = Service(env)
    errors: list[str] = []
    try:
        service.wait_ready()
        context, page = open_page(browser, service.base + "/", errors, **context_options)
        yield service, page
        context.close()
    finally:
        service.stop()
    assert errors == []


def test_more_like_this_shows_the_new_results_from_their_top_on_a_phone(browser, indexed):
    env, _ = indexed
    with phone_page(browser, env) as (_, page):
        expect(page.locator("#results .hit")).to_have_count(12)
        far_down = page.locator("#results .hit").nth(11)
        far_down.scroll_into_view_if_needed()
        page.wait_for_function("window.scrollY > 300")  # the last tiles, well below the header
        far_down.locator("a.similar").tap()
        page.wait_for_url("**/#similar/*")
        expect(page.locator("#results .hit")).to_have_count(11)
        page.wait_for_function("window.scrollY === 0")  # the query photo and the best matches on screen
        expect(page.locator("#query")).to_be_in_viewport()


def test_back_and_forward_redraw_each_view_an_upload_included(browser, indexed):
    env, photos = indexed
    with desktop_page(browser, env) as (service, page):
        expect(page.locator("#message")).to_contain_text("12 photos")  # the start page: what the library holds
        expect(page.locator("#results .hit")).to_have_count(12)  # the photos added last
        page.set_input_files("#file", str(photos / "img02.webp"))
        expect(page.locator("#query-name")).to_have_text("img02.webp")
        expect(page.locator("#results .hit .score")).to_have_count(12)  # the search's results, not the start page's
        expect(page.locator("#results .hit").first.locator(".name")).to_have_text("photos/img02.webp")
        uploaded = [n.get_attribute("title") for n in page.locator("#results .name").all()]
        page.locator("#results .hit").nth(3).locator("a.similar").click()
        page.wait_for_url("**/#similar/*")
        expect(page.locator("#results .hit")).to_have_count(11)

        page.go_back()  # to the upload's results, as they were
        page.wait_for_url(service.base + "/")
        expect(page.locator("#query-name")).to_have_text("img02.webp")
        expect(page.locator("#results .hit .score")).to_have_count(12)
        assert [n.get_attribute("title") for n in page.locator("#results .name").all()] == uploaded
        page.go_back()  # to the start page
        expect(page.locator("#query")).to_be_hidden()
        expect(page.locator("#message")).to_contain_text("Added last")
        page.go_forward()
        page.go_forward()  # and on to the similar photos again
        page.wait_for_url("**/#similar/*")
        expect(page.locator("#results .hit")).to_have_count(11)


def test_tiles_stay_square_with_a_portrait_photo_among_them(browser, indexed):
    from conftest import photo

    env, photos = indexed
    photo(77, 300, 900).save(photos / "portrait.png")  # three times as tall as wide
    assert run_script("edge-search", "index", str(photos), env=env).returncode == 0
    with desktop_page(browser, env) as (_, page):
        page.set_input_files("#file", str(photos / "portrait.png"))
        expect(page.locator("#query-name")).to_have_text("portrait.png")
        expect(page.locator("#results .hit .score")).to_have_count(13)  # the search's results, not the start page's
        boxes = [link.bounding_box() for link in page.locator("#results a.photo").all()]
        assert all(abs(b["width"] - b["height"]) < 1 for b in boxes)  # square, the portrait one included
        cards = [card.bounding_box()["height"] for card in page.locator("#results .hit").all()]
        assert max(cards) - min(cards) < 2  # no card stretched, no gaps under the others


def test_the_title_leads_back_to_the_start_and_show_reruns_the_view_on_screen(browser, indexed):
    env, photos = indexed
    with desktop_page(browser, env) as (service, page):
        expect(page.locator("#results .hit")).to_have_count(12)
        with page.expect_request(lambda r: r.url.endswith("/api/latest?k=48")):
            page.select_option("#k", "48")  # Show, on the start page: that many of the photos added last
        page.set_input_files("#file", str(photos / "img02.webp"))
        expect(page.locator("#results .hit .score")).to_have_count(12)
        with page.expect_request(lambda r: r.url.endswith("/api/query") and r.method == "POST"):
            page.select_option("#k", "12")  # Show, after an upload: the same search again, for that many
        expect(page.locator("#results .hit .score")).to_have_count(12)

        page.locator("#results .hit").nth(2).locator("a.similar").click()
        page.wait_for_url("**/#similar/*")
        shown, full = page.inner_text("#query-name"), page.get_attribute("#query-name", "title")
        assert full.startswith(str(photos)) and shown == "/".join(full.split("/")[-2:])  # folder/name, not the path

        page.click("header h1 a")  # the title: back to the start page from any view
        expect(page.locator("#query")).to_be_hidden()
        expect(page.locator("#message")).to_contain_text("Added last")


def test_a_date_range_and_words_narrow_an_upload_search_on_the_page(browser, indexed, tmp_path):
    env, photos = indexed
    with desktop_page(browser, env) as (service, page):
        expect(page.locator("#results .hit")).to_have_count(12)
        page.set_input_files("#file", str(photos / "img02.webp"))
        expect(page.locator("#results .hit .score")).to_have_count(12)  # indexed today: their files' dates
        page.fill("#before", "2001")
        with page.expect_request(lambda r: r.url.endswith("/api/query") and r.method == "POST"):
            page.locator("#before").dispatch_event("change")
        expect(page.locator("#message")).to_have_text("No similar photos found.")
        expect(page.locator("#results .hit")).to_have_count(0)
        page.fill("#before", "")
        page.fill("#after", "2001")
        page.locator("#after").dispatch_event("change")
        expect(page.locator("#results .hit .score")).to_have_count(12)
        expect(page.locator("#query-name")).to_have_text("img02.webp")


def test_a_result_opens_a_large_view_to_move_through_with_arrows_and_keys_and_close(browser, indexed):
    env, photos = indexed
    with desktop_page(browser, env) as (service, page):
        page.set_input_files("#file", str(photos / "img02.webp"))
        expect(page.locator("#results .hit .score")).to_have_count(12)
        paths = [n.get_attribute("title") for n in page.locator("#results .name").all()]
        page.locator("#results .hit").first.locator("a.photo").click()
        viewer = page.locator("#viewer")
        expect(viewer).to_be_visible()
        expect(page.locator("#viewer-path")).to_have_text(paths[0])  # folder and name in full
        expect(page.locator("#viewer-count")).to_have_text("1 / 12")
        expect(page.locator("#viewer-detail")).to_contain_text("taken ")  # the date, the pixels, the size, the score
        expect(page.locator("#viewer-detail")).to_contain_text("score 1.0000")
        expect(page.locator("#viewer-detail")).to_contain_text(" KB")
        width, height = Image.open(photos / "img02.webp").size
        expect(page.locator("#viewer-detail")).to_contain_text(f"{width}×{height}")
        expect(page.locator("#viewer-prev")).to_be_disabled()
        page.keyboard.press("ArrowRight")
        expect(page.locator("#viewer-path")).to_have_text(paths[1])
        page.click("#viewer-next")
        expect(page.locator("#viewer-count")).to_have_text("3 / 12")
        page.keyboard.press("ArrowLeft")
        expect(page.locator("#viewer-path")).to_have_text(paths[1])
        original = page.get_attribute("#viewer-original", "href")
        assert service.request(original)[1] == Path(paths[1]).read_bytes()
        page.keyboard.press("Escape")
        expect(viewer).to_be_hidden()
        page.locator("#results .hit").nth(4).locator("a.photo").click()
        page.click("#viewer-similar")  # more like this: the view closes and the search follows
        page.wait_for_url("**/#similar/*")
        expect(viewer).to_be_hidden()
        expect(page.locator("#results .hit")).to_have_count(11)
        expect(page.locator("#query-name")).to_have_attribute("title", paths[4])


def test_the_photo_view_fits_a_phone_and_moves_with_its_buttons(browser, indexed):
    env, _ = indexed
    with phone_page(browser, env) as (_, page):
        expect(page.locator("#results .hit")).to_have_count(12)  # the start page: the photos added last
        page.locator("#results .hit").nth(1).locator("a.photo").tap()
        expect(page.locator("#viewer")).to_be_visible()
        expect(page.locator("#viewer-count")).to_have_text("2 / 12")
        page.locator("#viewer-next").tap()
        expect(page.locator("#viewer-count")).to_have_text("3 / 12")
        # the whole view on the screen once the page has laid it out (an eventual check: on a busy machine the
        # first layout after the tap can still be the one before the view's photo arrived)
        page.wait_for_function(
            "() => { const box = document.querySelector('#viewer').getBoundingClientRect();"
            " return box.left >= 0 && box.right <= 390; }",
            timeout=10_000,
        )
        for button in ("#viewer-prev", "#viewer-next", "#viewer-close"):
            size = page.locator(button).bounding_box()
            assert size["width"] >= 40 and size["height"] >= 40  # big enough for a finger
        page.locator("#viewer-close").tap()
        expect(page.locator("#viewer")).to_be_hidden()


def test_words_typed_beside_an_uploaded_photo_search_with_both(browser, tiny_clip_bundle, photo_dir, tmp_path):
    from conftest import cli_env

    env = cli_env(tmp_path, tiny_clip_bundle)
    assert run_script("edge-search", "index", str(photo_dir), env=env).returncode == 0
    with desktop_page(browser, env) as (_, page):
        expect(page.locator("#words")).to_be_visible()  # a CLIP bundle: the words box is there
        page.set_input_files("#file", str(photo_dir / "img02.webp"))
        expect(page.locator("#results .hit .score")).to_have_count(12)
        alone = [float(s) for s in page.locator("#results .score").all_inner_texts()]
        page.fill("#text", "a dog")
        with page.expect_response(lambda r: r.url.endswith("/api/query") and r.request.method == "POST") as answer:
            page.click("#text-search")
        expect(page.locator("#query-name")).to_have_text("img02.webp + “a dog”")
        expect(page.locator("#query-image")).to_be_visible()
        together = [round(hit["score"], 3) for hit in answer.value.json()["results"]]
        expect(page.locator("#results .score").first).to_have_text(f"{together[0]:.3f}")
        assert together != alone  # the words moved the query: the photo alone would score itself 1.0


def test_a_video_result_shows_its_frame_and_time_and_plays_from_that_moment(browser, tmp_path, tiny_bundle):
    folder = tmp_path / "library"
    folder.mkdir()
    spans = make_slideshow(folder / "holiday.webm", codec="libvpx-vp9")
    for name in ("coins", "grass"):
        shutil.copy(CALIBRATION_PHOTOS / f"{name}.jpg", folder / f"{name}.jpg")
    env = cli_env(tmp_path, tiny_bundle)
    assert run_script("edge-search", "index", str(folder), env=env).returncode == 0
    service = Service(env)
    errors: list[str] = []
    try:
        service.wait_ready()
        context, page = open_page(browser, service.base + "/", errors, viewport={"width": 1280, "height": 900})
        page.wait_for_selector("#results .hit")  # the start page: the video stands as its first frame
        expect(page.locator("#results .hit .time")).to_have_text("▶ video")
        page.set_input_files("#file", str(CALIBRATION_PHOTOS / "chelsea.jpg"))
        page.wait_for_selector("#results .hit .score")
        video_hit = page.locator("#results .hit", has=page.locator(".time"))
        expect(video_hit).to_have_count(1)  # one result for the video, at its best moment
        at = float(
            service.upload((CALIBRATION_PHOTOS / "chelsea.jpg").read_bytes(), type="video")[1]["results"][0]["at"]
        )
        shown = f"{int(at) // 60:02d}:{int(at) % 60:02d}"
        expect(video_hit.locator(".time")).to_have_text(f"▶ {shown}")
        assert video_hit.locator(".name").inner_text().endswith(f"holiday.webm @ {shown}")
        assert any(span.start - 1 <= at < span.end for span in spans)
        video_hit.locator("a.photo").click()
        player = page.locator("#viewer-video")
        expect(player).to_be_visible()
        expect(page.locator("#viewer-image")).to_be_hidden()
        for _ in range(100):  # until the player has read the video's header (wait_for_function needs eval: CSP)
            if page.evaluate("document.querySelector('#viewer-video').readyState") >= 1:
                break
            page.wait_for_timeout(100)
        played_from = page.evaluate("document.querySelector('#viewer-video').currentTime")
        assert at - 0.6 < played_from < at + 2.0, (played_from, at)  # from the moment (it may be playing already)
        expect(page.locator("#viewer-detail")).to_contain_text(f"video at {shown}")
        page.keyboard.press("Escape")
        expect(player).to_have_js_property("paused", True)  # closing stops it (the dialog's close event)
        context.close()
    finally:
        service.stop()
    assert errors == []


LONG_NAME = "Kite_mirrored_over_the_dunes_at_dusk-with-friends.jpg"


@pytest.fixture
def long_names(tmp_path, tiny_bundle):
    folder = tmp_path / "a rather long folder name for the summer holidays of 2024"
    folder.mkdir()
    for i in range(3):
        photo(60 + i).save(folder / (LONG_NAME if i == 0 else f"short{i}.jpg"))
    env = cli_env(tmp_path, tiny_bundle)
    assert run_script("edge-search", "index", str(folder), env=env).returncode == 0
    return env


def test_a_long_file_name_keeps_its_name_in_view_and_wraps_only_at_separators_on_a_phone(browser, long_names):
    tile_name = "#results .hit .name:has(.file:text-matches('Kite_'))"
    with served_page(browser, long_names, viewport={"width": 1280, "height": 800}) as (_, page):
        expect(page.locator(tile_name)).to_have_count(1)
        widths = page.locator(tile_name).evaluate(
            "n => ({file: n.querySelector('.file').clientWidth, whole: n.clientWidth,"
            " needed: n.querySelector('.file').scrollWidth})"
        )
        assert widths["file"] >= min(widths["needed"], widths["whole"] * 0.6), widths  # the folder gave way first
    with phone_page(browser, long_names) as (_, page):
        expect(page.locator(tile_name)).to_have_count(1)
        broken_inside = page.locator(tile_name).evaluate(
            """n => {
                const walker = document.createTreeWalker(n, NodeFilter.SHOW_TEXT);
                const split = [];
                for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                    const range = document.createRange();
                    range.selectNodeContents(node);
                    const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
                    if (lines.size > 1) split.push(node.textContent);
                }
                return split;
            }"""
        )
        assert broken_inside == []  # each piece between separators stays on one line
        assert page.locator(tile_name).evaluate("n => n.getClientRects()[0].height") > 20  # it did wrap


def test_the_date_fields_show_a_format_not_a_value(browser, indexed):
    env, _ = indexed
    with served_page(browser, env) as (_, page):
        assert page.get_attribute("#after", "placeholder") == "YYYY-MM"
        assert page.get_attribute("#before", "placeholder") == "YYYY"
