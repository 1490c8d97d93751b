"""End-to-end tests in a real browser: Debian's Chromium driven by Playwright against ``otward serve``."""
