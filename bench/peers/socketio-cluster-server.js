// socket.io cluster peer: socketio-server.js with `@socket.io/redis-adapter`,
// so several processes share rooms through one Redis. Same protocol:
//
// client -> 42["join",ROOM]          server: socket.join(ROOM), emit("ok")
// client -> 42["publish",ROOM,DATA]  server: io.to(ROOM).emit("message", DATA)
//
// io.to(room).emit writes to this process's members of the room and PUBLISHes
// the packet (msgpack) once on `socket.io#/#ROOM#`; every process
// PSUBSCRIBEs `socket.io#/#*`, so each one receives every message, drops its
// own, and writes the others' to its members of the room. Redis keeps nothing:
// no order across processes, no history, nothing for a client that reconnects
// to another process. Settings as socketio-server.js (WebSocket transport
// only, no deflate, no HTTP compression, no client bundle); the adapter's
// defaults (its own two Redis connections: one to publish, one to subscribe).
//
//   PORT=9003 REDIS_URL=redis://127.0.0.1:6379 node socketio-cluster-server.js
//
// It listens only once both Redis connections are up, so a listening port
// means a node that is part of the cluster.
'use strict';
const http = require('http');
const { Server } = require('socket.io');
const { createClient } = require('redis');
const { createAdapter } = require('@socket.io/redis-adapter');

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 9003);
const url = process.env.REDIS_URL || 'redis://127.0.0.1:6379';

async function main() {
  const pubClient = createClient({ url });
  const subClient = pubClient.duplicate();
  pubClient.on('error', (e) => console.error('redis pub:', e.message));
  subClient.on('error', (e) => console.error('redis sub:', e.message));
  await Promise.all([pubClient.connect(), subClient.connect()]);

  const server = http.createServer();
  const io = new Server(server, {
    adapter: createAdapter(pubClient, subClient),
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
    console.log(`socketio-cluster-server listening on ${host}:${port}, redis ${url}`),
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
