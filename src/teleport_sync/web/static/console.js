// Live parts of each page: every element with data-src is re-fetched (same origin, the
// console's own cookie) and replaced while the tab is visible. Plain forms do the actions,
// so the console also works without this script.
"use strict";

const PERIOD_MS = 1000;

async function refresh(element) {
  try {
    const response = await fetch(element.dataset.src, { headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const html = await response.text();
    if (html !== element.dataset.last) {
      element.dataset.last = html;
      element.innerHTML = html;
      // The model just arrived on a capture page that had none: load its picture and 3D view.
      if (element.querySelector("[data-has-model=yes]") &&
          document.querySelector(".pictures[data-has-model=no]")) {
        location.reload();
      }
    }
  } catch (error) {
    // The daemon restarting: try again on the next tick.
  }
}

function tick() {
  if (document.hidden) return;
  for (const element of document.querySelectorAll(".live[data-src]")) refresh(element);
}

setInterval(tick, PERIOD_MS);
