// watchd dashboard: live regions and forms without a page load. The pages work without it.
//
// Every few seconds (while the tab is visible) the page fetches its own address again and
// swaps in each element marked data-live whose content changed (not one holding the focus).
// Forms marked data-async are posted with fetch; the answer shows as a flash message and the
// live regions refresh at once.
"use strict";
(function () {
  const every = Number(document.body.dataset.refresh || 3000);
  let busy = false;

  async function refresh() {
    if (busy || !document.querySelector("[data-live]")) return;
    busy = true;
    try {
      const answer = await fetch(location.href, { headers: { "X-Live": "1" }, credentials: "same-origin" });
      if (answer.status === 401 || answer.redirected) { location.reload(); return; }
      if (!answer.ok) return;
      const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
      for (const region of document.querySelectorAll("[data-live][id]")) {
        const next = fresh.getElementById(region.id);
        if (!next || region.contains(document.activeElement) && document.activeElement !== document.body) continue;
        if (next.innerHTML !== region.innerHTML) {
          region.innerHTML = next.innerHTML;
          region.className = next.className;
          region.title = next.title;
        }
      }
    } catch (e) {
      // the daemon is restarting, or the network hiccups: try again at the next tick
    } finally {
      busy = false;
    }
  }

  function flash(ok, message) {
    const box = document.getElementById("flash");
    if (!box) return;
    const div = document.createElement("div");
    div.className = "flash " + (ok ? "ok" : "bad");
    div.textContent = message;
    box.replaceChildren(div);
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-async")) return;
    event.preventDefault();
    for (const button of form.querySelectorAll("button")) button.disabled = true;
    try {
      const answer = await fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        headers: { "X-Live": "1", "Accept": "application/json" },
        credentials: "same-origin",
      });
      let message = answer.statusText;
      try { message = (await answer.json()).message || message; } catch (e) { /* not JSON */ }
      flash(answer.ok, message);
    } catch (e) {
      flash(false, "the dashboard did not answer: " + e);
    } finally {
      for (const button of form.querySelectorAll("button")) button.disabled = false;
      await refresh();
    }
  });

  setInterval(() => { if (!document.hidden) refresh(); }, every);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
})();
