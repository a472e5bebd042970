/*
 * The demo page's logic: the tenant key and the visitor come from the form, pre-filled from the
 * query string (?key=sk_...&user=visitor-1); each button sends one event with track.js and the
 * answer is shown. Text only (textContent, never HTML): segment names come from tenants' rules.
 */
(function () {
  "use strict";

  var params = new URLSearchParams(window.location.search);
  var keyInput = document.getElementById("key");
  var userInput = document.getElementById("user");
  keyInput.value = params.get("key") || "";
  userInput.value = params.get("user") || "visitor-" + Math.floor(Math.random() * 1e6);

  function list(values) {
    return values && values.length ? values.join(", ") : "-";
  }

  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) { td.className = className; }
    row.appendChild(td);
  }

  function show(answer) {
    var body = answer.body || {};
    var status = document.getElementById("status");
    var row = document.createElement("tr");
    row.dataset.eventId = answer.event.event_id;
    row.dataset.status = String(answer.status);
    cell(row, answer.event.name + (answer.event.values.path ? " " + answer.event.values.path : ""));
    cell(row, String(answer.status), "status");
    cell(row, String(answer.ms), "ms");
    if (answer.status === 200) {
      status.className = "";
      status.textContent = "200: evaluated in " + answer.ms + " ms, event " + body.seq + " of " + body.user_id +
        " (rules version " + body.rules_version + ")";
      var segments = document.getElementById("segments");
      segments.replaceChildren();
      body.segments.forEach(function (name) {
        var li = document.createElement("li");
        li.textContent = name;
        segments.appendChild(li);
      });
      document.getElementById("entered").textContent = list(body.entered);
      document.getElementById("exited").textContent = list(body.exited);
      cell(row, String(body.seq), "seq");
      cell(row, list(body.segments), "segments");
      cell(row, list(body.entered), "entered");
      cell(row, list(body.exited), "exited");
    } else {
      status.className = answer.status === 202 ? "" : "refused";
      status.textContent = answer.status === 202
        ? "202: accepted, not evaluated within the deadline (its evaluation goes to the evaluations topic)"
        : answer.status + ": " + (body.error || "no answer");
      ["seq", "segments", "entered", "exited"].forEach(function (name) { cell(row, "", name); });
    }
    cell(row, answer.event.event_id, "event-id");
    var log = document.getElementById("log");
    log.insertBefore(row, log.firstChild);
  }

  function send(name, values) {
    if (!keyInput.value.trim()) {
      var status = document.getElementById("status");
      status.className = "refused";
      status.textContent = "Enter a tenant key first (segstream tenant add NAME prints one).";
      return;
    }
    segstream.init({key: keyInput.value.trim(), userId: userInput.value.trim()});
    return name === "page_view" ? segstream.pageView(values) : segstream.track(name, values);
  }

  // Enter in a field would submit the form: a reload that loses the answers shown.
  document.getElementById("settings").addEventListener("submit", function (e) { e.preventDefault(); });
  window.addEventListener("segstream:answer", function (e) { show(e.detail); });
  document.querySelectorAll("button[data-path]").forEach(function (button) {
    button.addEventListener("click", function () { send("page_view", button.dataset.path); });
  });
  document.getElementById("add-to-cart").addEventListener("click", function () {
    send("add_to_cart", {product_id: "42"});
  });
  document.getElementById("purchase").addEventListener("click", function () {
    send("purchase", {amount: 1500, product_id: "42"});
  });
})();
