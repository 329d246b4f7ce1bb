// socket.io peer: rooms with socket.io's own protocol (Engine.IO v4) over its
// WebSocket transport.
//
// client -> 42["join",ROOM]          server: socket.join(ROOM), emit("ok")
// client -> 42["publish",ROOM,DATA]  server: io.to(ROOM).emit("message", DATA)
//
// io.to(room).emit encodes the packet once and writes it to every member (the
// publisher too, as in ringcast). Settings per socket.io's performance-tuning
// guide: WebSocket transport only, no per-message deflate, no HTTP compression,
// no client bundle, `bufferutil` and `utf-8-validate` installed.
//
// One process by default. With REDIS_URL set, several processes share rooms
// through `@socket.io/redis-adapter` (its defaults: one Redis connection to
// publish, one to PSUBSCRIBE `socket.io#/#*`): io.to(room).emit writes to
// this process's members and PUBLISHes the packet once on
// `socket.io#/#ROOM#`; every process receives every message, drops its own
// and writes the others' to its members. Redis keeps nothing: no order
// across processes, no history, nothing for a client that reconnects to
// another process. It listens only once both Redis connections are up, so a
// listening port means a node that is part of the cluster.
//
//   PORT=9003 [REDIS_URL=redis://127.0.0.1:6379] node socketio-server.js
'use strict';
const http = require('http');
const { Server } = require('socket.io');

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 9003);
const redisUrl = process.env.REDIS_URL || '';

// The Redis adapter, once both of its connections are up; none without REDIS_URL.
async function adapter() {
  if (!redisUrl) return undefined;
  const { createClient } = require('redis');
  const { createAdapter } = require('@socket.io/redis-adapter');
  const pubClient = createClient({ url: redisUrl });
  const subClient = pubClient.duplicate();
  pubClient.on('error', (e) => console.error('redis pub:', e.message));
  subClient.on('error', (e) => console.error('redis sub:', e.message));
  await Promise.all([pubClient.connect(), subClient.connect()]);
  return createAdapter(pubClient, subClient);
}

async function main() {
  const server = http.createServer();
  const io = new Server(server, {
    adapter: await adapter(),
    transports: ['websocket'],
    perMessageDeflate: false,
    httpCompression: false,
    serveClient: false,
    maxHttpBufferSize: 64 * 1024,
  });

  io.on('connection', (socket) => {
    socket.on('join', (room) => {
      if (typeof room !== 'string') return;
      socket.join(room);
      socket.emit('ok');
    });
    socket.on('publish', (room, data) => {
      if (typeof room !== 'string') return;
      io.to(room).emit('message', data);
    });
  });

  server.listen(port, host, () =>
    console.log(`socketio-server listening on ${host}:${port}${redisUrl ? `, redis ${redisUrl}` : ''}`),
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
