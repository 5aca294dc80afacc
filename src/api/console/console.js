// Keeps an overview or a delivery log live: on each "change" the server sends, the page
// asks for itself again and puts the new <main> in place. Without JavaScript every page
// still works; it just does not update by itself.
(() => {
  "use strict";
  const main = document.getElementById("main");
  if (!main || !main.dataset.live || !window.EventSource) return;
  const live = document.getElementById("live");
  const source = new EventSource("/ui/events");
  source.onopen = () => { if (live) live.hidden = false; };
  source.onerror = () => { if (live) live.hidden = true; };
  let busy = false;
  let again = false;
  const refresh = async () => {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const resp = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (resp.ok && !resp.redirected) {
        const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
        const next = doc.getElementById("main");
        // A form being filled in is not replaced under the user's hands.
        if (next && !main.contains(document.activeElement)) main.replaceChildren(...next.childNodes);
      }
    } catch (_) {
      // The next change tries again.
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  };
  source.addEventListener("change", refresh);
})();
