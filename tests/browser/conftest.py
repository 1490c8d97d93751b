"""Browser fixtures: Debian's Chromium (``/usr/bin/chromium``) driven by Playwright's sync API against a
real ``otward serve`` over HTTPS, plus screenshots and axe-core accessibility checks.

Fixtures (every test under ``tests/browser`` is also marked ``browser``)::

    playwright_driver  (module)  the Playwright driver; skips the test when /usr/bin/chromium is absent
    chromium           (module)  a headless Chromium that trusts no certificate (page.set_content tests)
    console_server     (test)    ConsoleServer: a running server, an admin and an auditor with passwords
    console_browser    (test)    a Chromium that trusts exactly console_server's TLS key
    new_console_page   (test)    () -> Page: a fresh context (own cookies) on console_server
    browser_page       (test)    one such Page; page.goto("/ui") resolves against the server

    shared_console_server, shared_console_browser (module), new_shared_console_page,
    shared_browser_page (test): the same on one server per test module, for tests that only look

Helpers: :func:`save_screenshot`, :func:`assert_accessible`, :func:`start_console_server`,
:func:`add_account`, :func:`launch_chromium`.

Why the driver is module-scoped, not session-scoped: between two sync calls Playwright leaves its
event loop marked as the thread's running loop, so while a driver is alive every ``asyncio.run()``
in the same thread fails ("cannot be called from a running event loop"). pytest-randomly keeps a
module's tests together, so a module-scoped driver is gone before another module's tests run.

Playwright never downloads a browser here: ``executable_path`` points at Debian's package
(``scripts/install --test`` installs it), and nothing runs ``playwright install``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, ViewportSize, sync_playwright

from tests.conftest import RunningServer, start_server, stop_server

CHROMIUM = Path("/usr/bin/chromium")
OPERATOR_ROLES = ("admin", "pki-officer", "enrollment-officer", "access-manager", "auditor")
"""alice's roles: every page and action of the console is hers."""
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
AXE_SCRIPT = HERE / "vendor" / "axe.min.js"
OUTPUT_ENV = "OTWARD_TEST_OUTPUT"
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}
WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
BLOCKING_IMPACTS = frozenset({"serious", "critical"})

CHROMIUM_ARGS = (
    "--no-sandbox",  # tests run as root in containers, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers' /dev/shm is often 64 MB: Chromium crashes on big pages
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    # The suite talks only to loopback: every host name except localhost fails to resolve, so a page
    # that loads something from a CDN fails its test instead of reaching out. IP literals
    # go through the rules too, hence the explicit exclusion of 127.0.0.1.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
)

_CALL_FAILED = pytest.StashKey[bool]()  # set per test by pytest_runtest_makereport
_SCREENSHOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/browser ``browser`` so ``-m "not browser"`` leaves all of them out."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember whether a test's call phase failed, for the screenshot ``new_console_page`` takes then."""
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


# --- the browser -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    """The Playwright driver for one test module (see the module docstring for why not per session).

    Skips, saying why, when Debian's Chromium is not installed; CI installs it, so there they run.
    """
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is not installed (Debian package chromium; scripts/install --test)")
    driver = sync_playwright().start()
    try:
        yield driver
    finally:
        driver.stop()


def launch_chromium(driver: Playwright, *, trusted_spki: Sequence[str] = ()) -> Browser:
    """Headless Debian Chromium with :data:`CHROMIUM_ARGS`.

    ``trusted_spki`` are base64 SHA-256 hashes of SubjectPublicKeyInfo: Chromium accepts a TLS
    certificate with one of those keys whatever signed it (``--ignore-certificate-errors-spki-list``,
    which works headless), and keeps refusing every other untrusted certificate. The page stays a
    secure context, so ``Secure`` cookies and HSTS behave as for a trusted server.
    """
    args = list(CHROMIUM_ARGS)
    if trusted_spki:
        args.append(f"--ignore-certificate-errors-spki-list={','.join(trusted_spki)}")
    return driver.chromium.launch(executable_path=str(CHROMIUM), args=args, headless=True)


@pytest.fixture(scope="module")
def chromium(playwright_driver: Playwright) -> Iterator[Browser]:
    """A Chromium that trusts no certificate: for pages built with ``page.set_content``."""
    browser = launch_chromium(playwright_driver)
    try:
        yield browser
    finally:
        browser.close()


# --- the server and its accounts ------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """A person's account on the console: what the sign-in form is filled with."""

    name: str
    password: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class ConsoleServer:
    """A running ``otward serve`` with two people on it: ``admin`` (every role but metrics) and ``auditor``
    (role auditor, read-only: for "action outside the role" tests)."""

    server: RunningServer
    admin: Account
    auditor: Account
    spki_sha256: str  # base64 SHA-256 of the served certificate's SubjectPublicKeyInfo

    @property
    def https_url(self) -> str:
        return self.server.https_url

    @property
    def data_dir(self) -> Path:
        return self.server.data_dir

    def url(self, path: str) -> str:
        """The absolute https URL of ``path`` (``"/ui/"``) on this server."""
        return self.server.https_url + path


def add_account(
    server: RunningServer, name: str, roles: Sequence[str], password: str | None = None
) -> Account:
    """Add a person's account with ``otward admin add`` as the local root (no ``--as``), through the
    real CLI in a subprocess; a random 24-character password unless ``password``.

    Raises RuntimeError if the account was not created, e.g. because the installation has two
    enabled admins and approvals (mode ``auto``) stored the addition as a request instead.
    """
    password = password if password is not None else secrets.token_urlsafe(18)
    password_file = server.data_dir.parent / f"{name}.password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    command = [sys.executable, "-m", "otward", "admin", "add", name]
    for role in roles:
        command += ["--role", role]
    command += ["--password-file", str(password_file), "--data", str(server.data_dir), "--json"]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    try:
        added = json.loads(result.stdout) if result.returncode == 0 else {}
    except ValueError:  # e.g. an approval request's JSON followed by a "once approved" line
        added = {}
    if added.get("name") != name or added.get("kind") != "person":
        raise RuntimeError(
            f"otward admin add {name} did not add the account (exit {result.returncode}): "
            f"{result.stdout}{result.stderr}"
        )
    return Account(name, password, tuple(roles))


def served_spki_sha256(server: RunningServer) -> str:
    """Base64 SHA-256 of the SubjectPublicKeyInfo of the certificate the server presents, read from a
    handshake that trusts only the installation's root (so it is the right server's key)."""
    parts = urlsplit(server.https_url)
    assert parts.hostname is not None
    assert parts.port is not None
    with (
        socket.create_connection((parts.hostname, parts.port), timeout=10) as sock,
        server.ssl_context().wrap_socket(sock, server_hostname=parts.hostname) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    spki = (
        x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def start_console_server(directory: Path) -> ConsoleServer:
    """``otward serve`` on a fresh installation in ``directory`` with the accounts alice (every role
    but metrics) and bob (auditor); stop it with ``stop_server(console.server)``.

    The installation already has one admin, the ``admin`` service identity behind admin.token.
    Adding alice makes two, and from then on approvals (mode ``auto``) hold every account change
    for a second admin: so bob is added first, and a test that needs more accounts must approve
    them (``otward approvals approve``) or add them through the console as such a change.
    """
    server = start_server(directory)
    try:
        auditor = add_account(server, "bob", ["auditor"])
        admin = add_account(server, "alice", list(OPERATOR_ROLES))
        spki = served_spki_sha256(server)
        return ConsoleServer(server=server, admin=admin, auditor=auditor, spki_sha256=spki)
    except BaseException:
        stop_server(server)
        raise


@pytest.fixture
def console_server(tmp_path: Path) -> Iterator[ConsoleServer]:
    """A running server of this test's own (SQLite), with an admin and an auditor account; about
    14 s to start on the project's machines (init, serve, two CLI runs)."""
    console = start_console_server(tmp_path / "console")
    try:
        yield console
    finally:
        stop_server(console.server)


@pytest.fixture(scope="module")
def shared_console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    """Like ``console_server`` but one for the whole test module: for tests that only look (render,
    accessibility, screenshots) and leave nothing behind another test of the module would notice."""
    console = start_console_server(tmp_path_factory.mktemp("shared") / "console")
    try:
        yield console
    finally:
        stop_server(console.server)


# --- pages ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _trusting_browser(driver: Playwright, console: ConsoleServer) -> Iterator[Browser]:
    browser = launch_chromium(driver, trusted_spki=[console.spki_sha256])
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def console_browser(playwright_driver: Playwright, console_server: ConsoleServer) -> Iterator[Browser]:
    """A Chromium that trusts exactly ``console_server``'s TLS key (launched per server, since the
    key must be known at launch)."""
    with _trusting_browser(playwright_driver, console_server) as browser:
        yield browser


@pytest.fixture(scope="module")
def shared_console_browser(
    playwright_driver: Playwright, shared_console_server: ConsoleServer
) -> Iterator[Browser]:
    """A Chromium that trusts exactly ``shared_console_server``'s TLS key."""
    with _trusting_browser(playwright_driver, shared_console_server) as browser:
        yield browser


@contextlib.contextmanager
def _page_factory(
    request: pytest.FixtureRequest, browser: Browser, console: ConsoleServer
) -> Iterator[Callable[[], Page]]:
    """New pages, each in its own context, closed at the end; screenshots of them if the test failed."""
    contexts: list[BrowserContext] = []

    def new_page() -> Page:
        context = browser.new_context(
            viewport=VIEWPORT, base_url=console.https_url, locale="en-GB", timezone_id="UTC"
        )
        contexts.append(context)
        return context.new_page()

    try:
        yield new_page
    finally:
        if request.node.stash.get(_CALL_FAILED, False):
            pages = [page for context in contexts for page in context.pages]
            for number, page in enumerate(pages, 1):
                with contextlib.suppress(Exception):  # a crashed page must not hide the test's failure
                    save_screenshot(page, f"{_safe_test_name(request.node.name)}-failure-{number}")
        for context in contexts:
            context.close()


@pytest.fixture
def new_console_page(
    request: pytest.FixtureRequest, console_browser: Browser, console_server: ConsoleServer
) -> Iterator[Callable[[], Page]]:
    """``new_console_page()`` -> a Page in a new browser context (own cookies and storage: one per
    person signed in at once), 1280x900, ``base_url`` the server's https URL, UTC, en-GB.

    If the test fails, a full-page screenshot of every page still open is saved as
    ``<test name>-failure-<n>.png`` in the output directory (see :func:`save_screenshot`).
    """
    with _page_factory(request, console_browser, console_server) as new_page:
        yield new_page


@pytest.fixture
def browser_page(new_console_page: Callable[[], Page]) -> Page:
    """A fresh page on ``console_server``: ``browser_page.goto("/ui/")`` (relative to its https URL)."""
    return new_console_page()


@pytest.fixture
def new_shared_console_page(
    request: pytest.FixtureRequest, shared_console_browser: Browser, shared_console_server: ConsoleServer
) -> Iterator[Callable[[], Page]]:
    """``new_console_page`` on ``shared_console_server``: fresh contexts per test, one server per module."""
    with _page_factory(request, shared_console_browser, shared_console_server) as new_page:
        yield new_page


@pytest.fixture
def shared_browser_page(new_shared_console_page: Callable[[], Page]) -> Page:
    """A fresh page (own cookies) on ``shared_console_server``."""
    return new_shared_console_page()


# --- screenshots and accessibility ----------------------------------------------------------------


def output_dir() -> Path:
    """Where test artefacts go: ``$OTWARD_TEST_OUTPUT`` if set, else ``<repo>/test-output/browser``
    (created; git ignores test-output/)."""
    configured = os.environ.get(OUTPUT_ENV)
    directory = Path(configured) if configured else REPO / "test-output" / "browser"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def save_screenshot(page: Page, name: str) -> Path:
    """A full-page PNG of ``page`` as ``<output dir>/<name>.png`` (overwritten); returns its path.

    ``name`` is a plain file name (letters, digits, ``.``, ``_``, ``-``), so no test can write outside
    the output directory.
    """
    stem = name.removesuffix(".png")
    if not _SCREENSHOT_NAME.fullmatch(stem):
        raise ValueError(f"screenshot name {name!r}: use letters, digits, '.', '_' and '-' only")
    path = output_dir() / f"{stem}.png"
    page.screenshot(path=path, full_page=True)
    return path


def _safe_test_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:80] or "test"


def assert_accessible(page: Page, context_name: str) -> dict[str, Any]:
    """Run axe-core (vendored, :data:`AXE_SCRIPT`) over ``page`` for WCAG 2.0/2.1 A and AA, fail the
    test on any violation of impact serious or critical, and return axe's full results (all
    violations, passes, incomplete) for finer assertions.

    axe is injected with ``page.evaluate`` rather than ``page.add_script_tag``: an inline script tag
    is refused by a Content-Security-Policy without 'unsafe-inline' (which the console should have),
    while DevTools evaluation is not subject to the page's CSP.
    """
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(_axe_source())
    results: dict[str, Any] = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", list(WCAG_TAGS)
    )
    blocking = [v for v in results["violations"] if v.get("impact") in BLOCKING_IMPACTS]
    if blocking:
        lines = [f"{context_name}: {len(blocking)} serious or critical accessibility violation(s) (axe-core)"]
        for violation in blocking:
            targets = [" ".join(str(t) for t in node["target"]) for node in violation["nodes"][:3]]
            more = len(violation["nodes"]) - len(targets)
            lines.append(
                f"- {violation['id']} ({violation['impact']}): {violation['help']}; "
                f"at {', '.join(targets)}{f' and {more} more' if more > 0 else ''}"
            )
        pytest.fail("\n".join(lines), pytrace=False)
    return results


@functools.cache
def _axe_source() -> str:
    return AXE_SCRIPT.read_text(encoding="utf-8")
