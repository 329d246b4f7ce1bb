// uWebSockets.js peer: ringcast's JSON ops over uWS topics.
//
// join    {"op":"join","room":R,"id":N}          -> subscribe(R), {"op":"ok","id":N,"room":R}
// publish {"op":"publish","room":R,"data":D,"id":N}
//         -> app.publish(R, {"op":"message","room":R,"user":U,"ts":MS,"data":D}) to every
//            subscriber (the publisher too, as in ringcast), then {"op":"ok","id":N,"room":R}
//
// Settings follow uWS's own guidance for pub/sub servers: no compression,
// automatic pings, a per-socket backpressure bound (slow readers are skipped
// past it rather than buffered without limit). One process: uWS topics live in
// one process, and the server gets one core in the benchmark.
'use strict';
const uWS = require('@trufflesuite/uws-js-unofficial');

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 9001);
const maxBackpressure = Number(process.env.MAX_BACKPRESSURE || 1024 * 1024);
let nextConn = 0;

const app = uWS.App();
app.ws('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: 64 * 1024,
  maxBackpressure,
  closeOnBackpressureLimit: false,
  idleTimeout: 120,
  sendPingsAutomatically: true,
  upgrade: (res, req, context) => {
    const user = req.getQuery('user') || 'anon';
    res.upgrade(
      { user, conn: String(++nextConn) },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },
  open: (ws) => {
    const d = ws.getUserData();
    ws.send(JSON.stringify({ op: 'welcome', user: d.user, conn: d.conn, shard: 0 }));
  },
  message: (ws, message) => {
    let m;
    try {
      m = JSON.parse(Buffer.from(message).toString());
    } catch {
      ws.send('{"op":"error","error":"bad json"}');
      return;
    }
    if (m.op === 'publish' && typeof m.room === 'string') {
      const d = ws.getUserData();
      app.publish(m.room, JSON.stringify({ op: 'message', room: m.room, user: d.user, ts: Date.now(), data: m.data }), false);
      ws.send(JSON.stringify({ op: 'ok', id: m.id, room: m.room }));
    } else if (m.op === 'join' && typeof m.room === 'string') {
      ws.subscribe(m.room);
      ws.send(JSON.stringify({ op: 'ok', id: m.id, room: m.room }));
    } else {
      ws.send(JSON.stringify({ op: 'error', id: m.id, error: 'unknown op' }));
    }
  },
});
app.listen(host, port, (token) => {
  if (!token) {
    console.error(`uws-server: cannot listen on ${host}:${port}`);
    process.exit(1);
  }
  console.log(`uws-server listening on ${host}:${port}`);
});
