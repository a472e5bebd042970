/*
 * segstream tracking snippet (no dependencies, no build step). Load it with
 *   <script src="https://FRONT/static/track.js"></script>
 * then
 *   segstream.init({key: "sk_...", userId: "visitor-42"});   // endpoint: the front (default: this page's origin)
 *   segstream.pageView();                                    // a page_view event, values {path, title}
 *   segstream.track("purchase", {amount: 1500});             // any event
 * Each call POSTs one event to /v1/track and resolves to {status, body, ms}: on 200 the body is the
 * evaluation receipt {event_id, user_id, seq, segments, entered, exited, rules_version, stats}; on
 * 202 {event_id, status: "accepted"} (evaluated later); otherwise {error}. Every answer is also
 * dispatched on `window` as a "segstream:answer" CustomEvent (detail = the same object), so a page
 * can react to the user's segments in the request that changed them.
 *
 * The event_id is made here, before sending: a retry of the same event sends the same id.
 * The tenant is the key's; the key is visible to anyone who reads the page (see docs/serving.md).
 */
(function (global) {
  "use strict";

  var config = null;

  function newEventId() {
    var bytes = new Uint8Array(16);
    global.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return (b + 0x100).toString(16).slice(1); }).join("");
  }

  function init(options) {
    if (!options || !options.key) { throw new Error("segstream.init: a tenant key is required"); }
    if (!options.userId) { throw new Error("segstream.init: a userId is required"); }
    config = {
      key: String(options.key),
      userId: String(options.userId),
      endpoint: String(options.endpoint || global.location.origin).replace(/\/+$/, ""),
    };
    return config;
  }

  function track(name, values) {
    if (!config) { return Promise.reject(new Error("segstream.track: call segstream.init first")); }
    var event = {event_id: newEventId(), user_id: config.userId, name: String(name), values: values || {}};
    var started = global.performance.now();
    return global.fetch(config.endpoint + "/v1/track", {
      method: "POST",
      headers: {"Content-Type": "application/json", "Authorization": "Bearer " + config.key},
      body: JSON.stringify(event),
      keepalive: true,  // a page view sent as the page unloads still leaves
    }).then(function (response) {
      return response.json().catch(function () { return {error: "the answer is not JSON"}; }).then(function (body) {
        return {status: response.status, body: body, ms: Math.round(global.performance.now() - started),
                event: event};
      });
    }, function (error) {
      // The front is unreachable: the event may or may not be in Kafka (resend with the same event_id).
      return {status: 0, body: {error: String(error)}, ms: Math.round(global.performance.now() - started),
              event: event};
    }).then(function (answer) {
      global.dispatchEvent(new CustomEvent("segstream:answer", {detail: answer}));
      return answer;
    });
  }

  function pageView(path) {
    return track("page_view", {path: path || global.location.pathname, title: global.document.title});
  }

  global.segstream = {init: init, track: track, pageView: pageView};
})(window);
