// A small client of the gateway's realtime socket (/realtime/v1/websocket,
// Supabase Realtime's Phoenix protocol, vsn 1.0.0): one private channel, its
// broadcasts handed to `onMessage`, a heartbeat, and a reconnect with backoff.
// `onState` hears "live" (joined), "refused" and "offline"; a page reloads
// its data on "live", so nothing missed while offline is lost.

const HEARTBEAT_MS = 25000;

export function subscribe(topic, token, onMessage, onState = () => {}) {
  const channel = `realtime:${topic}`;
  let socket = null;
  let timer = null;
  let ref = 0;
  let retry = 1000;
  let stopped = false;

  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    // The token travels in the join, never in the URL (URLs end up in logs).
    socket = new WebSocket(`${scheme}//${location.host}/realtime/v1/websocket?apikey=pages&vsn=1.0.0`);
    socket.addEventListener("open", () => {
      const joinRef = String(++ref);
      send({ topic: channel, event: "phx_join", ref: joinRef, join_ref: joinRef,
        payload: { config: { private: true, broadcast: { self: false } }, access_token: token } });
      timer = setInterval(() => send({ topic: "phoenix", event: "heartbeat", payload: {}, ref: String(++ref) }),
        HEARTBEAT_MS);
    });
    socket.addEventListener("message", (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      if (!frame || frame.topic !== channel) return;
      if (frame.event === "phx_reply" && frame.ref === frame.join_ref) {
        const ok = frame.payload?.status === "ok";
        if (ok) retry = 1000;
        onState(ok ? "live" : "refused");
      } else if (frame.event === "broadcast") {
        onMessage(frame.payload?.payload || {});
      } else if (frame.event === "phx_close") {
        socket.close();
      }
    });
    socket.addEventListener("close", () => {
      clearInterval(timer);
      if (stopped) return;
      onState("offline");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    });
  }

  connect();
  return () => { stopped = true; clearInterval(timer); if (socket) socket.close(); };
}
