#!/usr/bin/env python3
"""Drives the compliance console in headless Chromium against a running gateway.

Started by the Rust test `tests/api/browser.rs`, which spawns a real gateway on the demo data
and passes everything in environment variables:

  CONSOLE_ORIGIN      https://localhost:PORT
  CONSOLE_PFX         the oversight agency's PKCS#12 file, CONSOLE_PFX_PASSWORD its password
  CONSOLE_CLINICIAN_PFX the mental-health agency's PKCS#12 file (same password)
  CONSOLE_TOKEN       a compliance officer's token; CONSOLE_CLINICIAN_TOKEN a clinician's
                      (of the mental-health agency); CONSOLE_EXPIRED_TOKEN an expired
                      compliance token
  CONSOLE_SCREENSHOTS the folder for screenshots
  CHROMIUM            the browser (default /usr/bin/chromium)

Prints one line per step and `N passed, 0 failed`; exits non-zero on the first failure.
"""

import csv
import datetime
import io
import os
import re
import sys
import time

from playwright.sync_api import expect, sync_playwright

ORIGIN = os.environ["CONSOLE_ORIGIN"]
SHOTS = os.environ["CONSOLE_SCREENSHOTS"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 20_000
passed = 0


def step(name):
    global passed
    passed += 1
    print(f"ok {passed} - {name}", flush=True)


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def context(browser, pfx_var="CONSOLE_PFX"):
    ctx = browser.new_context(
        client_certificates=[{
            "origin": ORIGIN,
            "pfxPath": os.environ[pfx_var],
            "passphrase": os.environ["CONSOLE_PFX_PASSWORD"],
        }],
        ignore_https_errors=True,  # the dev CA is not in this throwaway profile
        accept_downloads=True,
        viewport={"width": 1280, "height": 900},
    )
    ctx.set_default_timeout(TIMEOUT_MS)
    return ctx


def nav(page, name):
    page.locator("nav").get_by_role("link", name=name, exact=True).click()


def officer_session(browser):
    ctx = context(browser)
    page = ctx.new_page()
    other_hosts = []
    page.on("request", lambda r: None if r.url.startswith(ORIGIN) or r.url.startswith(("data:", "blob:")) else other_hosts.append(r.url))

    # Sign in through the fragment; the token leaves the address bar at once.
    page.goto(f"{ORIGIN}/console/#token={os.environ['CONSOLE_TOKEN']}")
    expect(page.locator("#tile-disclosures")).to_be_visible()
    assert "token=" not in page.url, page.url
    expect(page.locator("#who")).to_contain_text("aud-1")
    assert page.locator("#who").inner_text().count("aud-1") == 1, page.locator("#who").inner_text()
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator("#chart-recipient svg")).to_be_visible()
    expect(page.locator(".loaded")).to_contain_text("Loaded at")
    assert int(page.locator("#tile-disclosures").inner_text()) > 0
    shot(page, "overview")
    step("signs in from the URL fragment, removes the token and shows the overview with charts")

    # Keyboard: from the top, the first Tab reaches the skip link, which moves to the content.
    # (Focus the document itself, so the next Tab starts from the top of the page.)
    page.evaluate(
        "document.body.tabIndex = -1; document.body.focus(); document.body.removeAttribute('tabindex')"
    )
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    step("keyboard: the skip link comes first and leads to the content")

    # Search the log for the demo subject: the README journeys' disclosures are there.
    nav(page, "Search the log")
    page.get_by_label("Subject identifier system").fill("metro-pd")
    page.get_by_label("Subject identifier value").fill("P-2231")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("table.entries tbody tr")
    expect(rows.first).to_be_visible()
    text = page.locator("table.entries").inner_text()
    for expected in ("county-mh", "treatment", "referral-followup", "metro-pd", "crisis-response", "investigation", "deny"):
        assert expected in text, f"{expected!r} not in the search results:\n{text}"
    shot(page, "search")
    step("searches the log by subject and finds the README journeys' entries")

    # Open the clinician's treatment read and see each field's reasons.
    row = rows.filter(has_text="treatment").filter(has_text="permit").first
    row.locator("a").first.click()
    expect(page.locator("h1")).to_contain_text("Log entry")
    fields = page.locator("table.fields")
    expect(fields).to_be_visible()
    assert "mou-rule:" in fields.inner_text(), fields.inner_text()
    body = page.locator("main").inner_text()
    for expected in ("decision id", "policy-set hash", "entry hash", "previous hash"):
        assert expected in body, expected
    shot(page, "entry")
    step("opens an entry and sees every field's transform and reasons, the decision and its chain position")

    # Verify the chain; see the checkpoints.
    nav(page, "Verify the chain")
    page.locator("#verify-button").click()
    expect(page.locator("#verify-ok")).to_be_visible()
    checkpoints = page.locator("table.checkpoints")
    expect(checkpoints).to_be_visible()
    expect(checkpoints.locator("tbody tr").first).to_contain_text("valid (checked here)")
    assert "INVALID" not in checkpoints.inner_text(), checkpoints.inner_text()
    shot(page, "verify")
    step("verifies the chain and lists the signed checkpoints, each signature checked by the browser")

    # The latest signed tree head (a C2SP checkpoint): the browser checks the gateway's Ed25519
    # signature over the note text itself, and refuses the note once its tree size or root is
    # changed, or its signature comes from another key.
    head = page.locator("#tree-head")
    expect(head.locator("#tree-head-signature")).to_have_text("valid (checked here)")
    assert "+" in head.inner_text() and "tree size" in head.inner_text(), head.inner_text()
    checked = page.evaluate("""async () => {
        const m = await import('/console/views.js');
        const res = await fetch('/v1/audit/checkpoint', { headers: { Authorization: 'Bearer ' + TOKEN } });
        const note = await res.text();
        const x = await (await fetch('/v1/audit/checkpoints', { headers: { Authorization: 'Bearer ' + TOKEN } })).json();
        const lines = note.split('\\n');
        const grown = [lines[0], String(Number(lines[1]) + 1), ...lines.slice(2)].join('\\n');
        const root = lines[2];
        const flipped = root[0] === 'A' ? 'B' + root.slice(1) : 'A' + root.slice(1);
        const forked = [lines[0], lines[1], flipped, ...lines.slice(3)].join('\\n');
        const other = '11'.repeat(32);
        return [
            (await m.checkTreeHead(note, x.public_key)).valid,
            (await m.checkTreeHead(grown, x.public_key)).valid,
            (await m.checkTreeHead(forked, x.public_key)).valid,
            (await m.checkTreeHead(note, other)).valid,
            (await m.checkTreeHead('not a note', x.public_key)).valid,
        ];
    }""".replace("TOKEN", repr(os.environ["CONSOLE_TOKEN"])))
    assert checked == [True, False, False, False, False], checked
    step("checks the signed tree head's C2SP signature in the browser and refuses it once altered")

    # The accounting of disclosures, with its CSV.
    nav(page, "Accounting")
    page.get_by_label("Identifier system").fill("metro-pd")
    page.get_by_label("Identifier value").fill("P-2231")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("table.accounting tbody tr").first).to_be_visible()
    with page.expect_download() as dl:
        page.locator("#download-csv").click()
    data = open(dl.value.path(), encoding="utf-8").read()
    lines = list(csv.reader(io.StringIO(data)))
    assert len(lines) >= 2, data
    assert any("treatment" in " ".join(r).lower() for r in lines[1:]), data
    # An absent value (no suspension, no address) shows as nothing, never as "null".
    expect(page.locator("#sus-h")).to_be_visible()
    expect(page.locator("section[aria-labelledby=sus-h] table")).to_be_visible()
    shown = page.locator("main").inner_text()
    absent = re.findall(r"\b(?:null|undefined|NaN)\b", shown)
    assert not absent, f"the accounting page shows {absent}: {shown}"
    shot(page, "accounting")
    step(f"shows the accounting and downloads its CSV ({len(lines) - 1} rows)")

    # The emergency review queue: open the review, see its disclosures, close it.
    nav(page, "Emergency reviews")
    expect(page.locator("table.reviews tbody tr").first).to_be_visible()
    shot(page, "reviews")
    page.locator("table.reviews a").first.click()
    expect(page.locator("h1")).to_have_text("Emergency review")
    expect(page.locator("table.entries tbody tr").first).to_contain_text("emergency")
    page.get_by_label("Justified", exact=True).check()
    page.get_by_label("Note (why)").fill("dispatch record confirms the threat")
    page.get_by_role("button", name="Close the review").click()
    expect(page.locator("main")).to_contain_text("closed: justified")
    shot(page, "review")
    step("opens an emergency review with its window's disclosures and closes it")

    # Consent coverage.
    nav(page, "Consent coverage")
    page.get_by_label("Identifier system").fill("county-mh")
    page.get_by_label("Identifier value").fill("MRN-1001")
    page.get_by_label("Recipient partner").fill("metro-pd")
    page.get_by_label("Purpose").fill("crisis-response")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("section.flow").first).to_be_visible()
    assert "flows" in page.locator("main").inner_text()
    shot(page, "coverage")
    step("shows consent coverage field by field")

    # Reports: those a compliance officer may run, and one run over the demo year.
    nav(page, "Reports")
    page.get_by_role("link", name="Crisis incidents by month and disposition").click()
    today = datetime.date.today()
    page.get_by_label("From (UTC, inclusive)").fill((today - datetime.timedelta(days=400)).isoformat())
    page.get_by_label("To (UTC, exclusive)").fill(today.isoformat())
    page.get_by_role("button", name="Run").click()
    try:
        expect(page.locator("table.report").first).to_be_visible()
    except Exception:
        print(page.locator("main").inner_text(), flush=True)
        raise
    text = page.locator("table.report").first.inner_text()
    for cell in text.replace("\t", "\n").split("\n"):
        cell = cell.strip()
        if cell.isdigit():
            assert not 1 <= int(cell) <= 10, f"a count of {cell} in:\n{text}"
    expect(page.locator("main")).to_contain_text("Log entry")
    shot(page, "report")
    step("lists the reports the officer may run and shows one with no count from 1 to 10")

    assert not other_hosts, f"requests to other hosts: {other_hosts}"
    step("made no request to any other host")
    ctx.close()


def refused_sessions(browser):
    ctx = context(browser, "CONSOLE_CLINICIAN_PFX")
    page = ctx.new_page()
    page.goto(f"{ORIGIN}/console/#token={os.environ['CONSOLE_CLINICIAN_TOKEN']}")
    err = page.locator(".error").first
    expect(err).to_contain_text("compliance_role_required")
    expect(err).to_contain_text("Request-Id")
    assert "token=" not in page.url, page.url
    shot(page, "refused")
    step("refuses a clinician's token, showing the API's message and Request-Id")
    ctx.close()

    ctx = context(browser)
    page = ctx.new_page()
    page.goto(f"{ORIGIN}/console/#token={os.environ['CONSOLE_EXPIRED_TOKEN']}")
    expect(page.locator("#signed-out")).to_contain_text("expired")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    shot(page, "expired")
    step("says clearly that an expired token was refused and asks to sign in again")
    ctx.close()


def main():
    os.makedirs(SHOTS, exist_ok=True)
    started = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True, timeout=60_000)
        try:
            officer_session(browser)
            refused_sessions(browser)
        finally:
            browser.close()
    print(f"console test took {time.monotonic() - started:.1f} s")
    print(f"{passed} passed, 0 failed")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # report and fail loudly
        print(f"not ok {passed + 1} - {type(e).__name__}: {e}", flush=True)
        print(f"{passed} passed, 1 failed")
        sys.exit(1)
