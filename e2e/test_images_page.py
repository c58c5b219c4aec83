"""A person in Chromium uploads an image file from the Images page: a
progress bar shows how far it got, and when the connection drops (a piece
lost on the way, and a piece that arrived but whose answer was lost) the
upload carries on where the portal's copy ends, so what arrives is the file,
byte for byte. Then they download it again from the image's page."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect

from e2e.conftest import log_in
from tests.support.cloud import Cloud

pytestmark = pytest.mark.e2e

MiB = 1 << 20
SIZE = 9 * MiB  # five pieces of at most 2 MiB


def test_upload_with_progress_resumed_after_dropped_connections_then_download(
        page: Page, cloud: Cloud, tmp_path: Path) -> None:
    source = tmp_path / "browser-upload.img"
    source.write_bytes(os.urandom(SIZE))
    digest = hashlib.sha512(source.read_bytes()).hexdigest()

    chunks: list[str] = []

    def flaky(route: Route) -> None:
        chunks.append(route.request.url)
        if len(chunks) == 2:
            route.abort("connectionreset")  # the piece never reaches the portal
        elif len(chunks) == 4:
            route.fetch()  # the piece arrives...
            route.abort("connectionreset")  # ...but its answer is lost
        else:
            route.continue_()

    log_in(page, cloud.url, "admin", cloud.admin_password)
    page.get_by_role("link", name="Images").click()
    page.route("**/images/uploads/*/chunk/", flaky)
    form = page.locator("#image-upload-form")
    form.get_by_label("Image file").set_input_files(str(source))
    form.get_by_label("Name").fill("from-the-browser")
    form.get_by_role("button", name="Upload").click()

    # After the first piece the bar shows 2 of 9 MiB, and stays there while
    # the upload waits to resume after the first dropped connection.
    progress = form.locator("progress")
    expect(progress).to_be_visible()
    expect(progress).to_have_attribute("value", str(2 * MiB * 100 // SIZE))
    expect(form.locator("[data-upload-status]")).to_contain_text("resuming")
    page.wait_for_url(f"{cloud.url}/images/*-*/", timeout=60_000)
    uuid = page.url.rstrip("/").rsplit("/", 1)[-1]
    # Six requests for five pieces: one resent after it was lost, none twice
    # after it arrived.
    assert len(chunks) == 6, chunks

    shown = cloud.api().get(f"/artifacts/{uuid}").json()
    assert shown["state"] == "created" and shown["name"] == "from-the-browser"
    blob = cloud.api().get(f"/blobs/{shown['blob_uuid']}").json()
    assert blob["size"] == SIZE and blob["sha512"] == digest
    expect(page.locator("#image-versions tr[data-index='1']")).to_contain_text(
        shown["blob_uuid"])

    with page.expect_download() as downloading:
        page.locator(".page-header__actions").get_by_role("link", name="Download").click()
    saved = tmp_path / "downloaded.img"
    downloading.value.save_as(saved)
    assert downloading.value.suggested_filename == "from-the-browser"
    assert hashlib.sha512(saved.read_bytes()).hexdigest() == digest
    assert cloud.api().delete(f"/artifacts/{uuid}").status_code == 200
