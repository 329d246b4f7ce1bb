// Node `ws` peer: ringcast's JSON ops, broadcast to a room's member set.
//
// The usual shape of a `ws` chat server: a Map from room to a Set of sockets,
// JSON.parse per incoming message, JSON.stringify once per publish, then
// send() to every member (the publisher too, as in ringcast).
//
// Settings per the `ws` README's performance notes: no permessage-deflate,
// `bufferutil` and `utf-8-validate` installed, no client tracking set. One
// process: rooms live in one process and the server gets one core.
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 9002);
const rooms = new Map();
let nextConn = 0;

const server = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 64 * 1024, clientTracking: false });

wss.on('connection', (ws, req) => {
  const user = new URL(req.url, 'http://x').searchParams.get('user') || 'anon';
  const joined = new Set();
  ws.send(JSON.stringify({ op: 'welcome', user, conn: String(++nextConn), shard: 0 }));
  ws.on('message', (buf) => {
    let m;
    try {
      m = JSON.parse(buf);
    } catch {
      ws.send('{"op":"error","error":"bad json"}');
      return;
    }
    if (m.op === 'publish' && typeof m.room === 'string') {
      const members = rooms.get(m.room);
      if (members) {
        const out = JSON.stringify({ op: 'message', room: m.room, user, ts: Date.now(), data: m.data });
        for (const peer of members) peer.send(out);
      }
      ws.send(JSON.stringify({ op: 'ok', id: m.id, room: m.room }));
    } else if (m.op === 'join' && typeof m.room === 'string') {
      let members = rooms.get(m.room);
      if (!members) rooms.set(m.room, (members = new Set()));
      members.add(ws);
      joined.add(m.room);
      ws.send(JSON.stringify({ op: 'ok', id: m.id, room: m.room }));
    } else {
      ws.send(JSON.stringify({ op: 'error', id: m.id, error: 'unknown op' }));
    }
  });
  ws.on('close', () => {
    for (const r of joined) {
      const members = rooms.get(r);
      if (members) {
        members.delete(ws);
        if (members.size === 0) rooms.delete(r);
      }
    }
  });
  ws.on('error', () => {});
});

server.listen(port, host, () => console.log(`ws-server listening on ${host}:${port}`));
