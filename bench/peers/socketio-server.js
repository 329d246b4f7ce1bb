// socket.io peer: rooms with socket.io's own protocol (Engine.IO v4) over its
// WebSocket transport.
//
// client -> 42["join",ROOM]          server: socket.join(ROOM), emit("ok")
// client -> 42["publish",ROOM,DATA]  server: io.to(ROOM).emit("message", DATA)
//
// io.to(room).emit encodes the packet once and writes it to every member (the
// publisher too, as in ringcast). Settings per socket.io's performance-tuning
// guide: WebSocket transport only, no per-message deflate, no HTTP compression,
// no client bundle, `bufferutil` and `utf-8-validate` installed. One process:
// more would need an adapter (Redis) between them, and the server gets one core.
'use strict';
const http = require('http');
const { Server } = require('socket.io');

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 9003);

const server = http.createServer();
const io = new Server(server, {
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

server.listen(port, host, () => console.log(`socketio-server listening on ${host}:${port}`));
