// Live updates for the front desk (progressive: every page works without this file).
// One server-sent event stream per tab; on a change, each element marked data-live="kinds" (and,
// with data-number, only for that conversation) asks htmx to fetch its own rows again.
(function () {
  if (!window.EventSource) return;
  var es = new EventSource("/events");
  es.addEventListener("change", function (e) {
    var d;
    try { d = JSON.parse(e.data); } catch (err) { return; }
    var els = document.querySelectorAll("[data-live]");
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      var kinds = (el.getAttribute("data-live") || "").split(" ");
      if (kinds.indexOf(d.kind) < 0) continue;
      var num = el.getAttribute("data-number");
      if (num && d.number && d.kind !== "resync" && num !== d.number) continue;
      if (window.htmx) window.htmx.trigger(el, "live");
    }
  });
  document.body.addEventListener("htmx:afterSwap", function () {
    document.documentElement.setAttribute("data-live-updated", String(Date.now()));
  });
})();
