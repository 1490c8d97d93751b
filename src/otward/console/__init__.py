"""The web console under ``/ui`` of ``otward serve``: server-rendered pages (Jinja2, htmx vendored)
for administrators signed in with their accounts (docs/console.md)."""
