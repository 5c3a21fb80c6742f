// A small client of the gateway's realtime stream (GET /realtime/v1/sse,
// Server-Sent Events): one topic, its messages handed to `onMessage`, and a
// reconnect with backoff. Read with fetch, so the person's token travels in
// the Authorization header, never in the URL (URLs end up in logs), and no
// apikey is needed (a realtime socket's apikey must be a JWT: the pages hold
// no anon key). `onState` hears "live" (the stream is listening), "refused"
// (401, 403, 404) and "offline"; a page reloads its data on "live", so
// nothing missed while offline is lost.

export function subscribe(topic, token, onMessage, onState = () => {}) {
  let retry = 1000;
  let stopped = false;
  let controller = null;

  function dispatch(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;  // a heartbeat
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return true;
    if (event === "ready") {
      retry = 1000;
      onState("live");
    } else if (event === "expired" || event === "reconnect") {
      return false;  // the stream ends: connect again
    } else {
      let payload;
      try { payload = JSON.parse(data.join("\n")); } catch { return true; }
      onMessage(payload || {});
    }
    return true;
  }

  async function connect() {
    controller = new AbortController();
    let refused = false;
    try {
      const response = await fetch(`/realtime/v1/sse?${new URLSearchParams({ topic })}`, {
        headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" },
        cache: "no-store", signal: controller.signal,
      });
      if ([401, 403, 404].includes(response.status)) {
        refused = true;
      } else if (response.ok && response.body) {
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, "\n");
          let end;
          let going = true;
          while (going && (end = buffer.indexOf("\n\n")) >= 0) {
            going = dispatch(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
          if (!going) {
            controller.abort();
            break;
          }
        }
      }
    } catch {
      // offline, or stopped
    }
    if (stopped) return;
    if (refused) {
      onState("refused");
      return;
    }
    onState("offline");
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 30000);
  }

  connect();
  return () => { stopped = true; if (controller) controller.abort(); };
}
