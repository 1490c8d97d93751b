// otward console: the little behaviour htmx does not cover. No inline script anywhere (CSP).
"use strict";

// Copy buttons: <button data-copy="element-id">. The secret stays in the page; nothing is sent.
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy]");
  if (!button) { return; }
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source) { return; }
  var text = source.value !== undefined ? source.value : source.textContent;
  var status = document.getElementById(button.getAttribute("aria-describedby") || "");
  function done(message) { if (status) { status.textContent = message; } }
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(function () { done("Copied."); },
      function () { done("Copy failed: select the text and copy it by hand."); });
  } else {
    if (source.select) { source.select(); }
    done("Select the text and copy it by hand.");
  }
});

// After htmx swaps in new results, move focus to them so keyboard and screen-reader users follow.
document.addEventListener("htmx:afterSwap", function (event) {
  var target = event.detail.target;
  if (target && target.hasAttribute("data-focus-after-swap")) { target.focus(); }
});
