// Node ws peer for the comparison: `node server.js HOST:PORT echo|broadcast`.
// Written as ws's README does (echo: send back; broadcast: "server broadcast" to every other
// open client). ws sets TCP_NODELAY by default.
'use strict';
const { WebSocketServer, WebSocket } = require('ws');

const [addr, mode] = process.argv.slice(2);
if (!addr || !['echo', 'broadcast'].includes(mode)) {
  console.error('usage: node server.js HOST:PORT echo|broadcast');
  process.exit(2);
}
const at = addr.lastIndexOf(':');
const wss = new WebSocketServer({
  host: addr.slice(0, at),
  port: Number(addr.slice(at + 1)),
  maxPayload: 16 * 1024 * 1024,
});
wss.on('listening', () => {
  const { address, port } = wss.address();
  console.log(`listening on ${address}:${port}`);
});
wss.on('connection', (ws) => {
  ws.on('error', () => {});
  if (mode === 'echo') {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  } else {
    ws.on('message', (data, isBinary) => {
      for (const client of wss.clients) {
        if (client !== ws && client.readyState === WebSocket.OPEN) {
          client.send(data, { binary: isBinary });
        }
      }
    });
  }
});
