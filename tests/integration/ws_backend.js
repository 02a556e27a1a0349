// A Node `ws` backend for the integration tests (test_node_backend.py). Run it as
//   NODE_PATH=/usr/share/nodejs node ws_backend.js [PORT]
// (PORT 0 or absent: a port picked by the kernel). It listens on 127.0.0.1 only and prints one
// JSON object per line on stdout:
//   {"event":"listening","port":N}                                          once, first
//   {"event":"connection","id":I,"protocol":P,"extensions":E,"offered_extensions":O,
//    "offered_protocols":[...],"path":U}
//   {"event":"message","id":I,"binary":B,"bytes":N}                         per message
//   {"event":"close","id":I,"code":C,"reason":R}                            as ws saw it
// Every message is echoed back with its own type (text or binary), except a text message
// `close:CODE:REASON`, which makes the backend close the connection with CODE and REASON.
'use strict';

const { WebSocketServer } = require('ws');

// The backend's own preference order: it picks chat.v1 over chat.v2 whatever order the client
// offers them in, so a test can tell the backend's choice from the client's first offer.
const SUPPORTED_PROTOCOLS = ['chat.v1', 'chat.v2'];

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

const port = Number(process.argv[2] || 0);
const server = new WebSocketServer({
  host: '127.0.0.1',
  port,
  perMessageDeflate: true,
  maxPayload: 64 * 1024 * 1024,
  handleProtocols: (offered) => SUPPORTED_PROTOCOLS.find((p) => offered.has(p)) || false,
});

let nextId = 0;
server.on('connection', (ws, request) => {
  const id = ++nextId;
  const offered = request.headers['sec-websocket-protocol'] || '';
  emit({
    event: 'connection',
    id,
    path: request.url,
    protocol: ws.protocol,
    extensions: ws.extensions,
    offered_extensions: request.headers['sec-websocket-extensions'] || '',
    offered_protocols: offered ? offered.split(',').map((p) => p.trim()) : [],
  });
  ws.on('message', (data, isBinary) => {
    emit({ event: 'message', id, binary: isBinary, bytes: data.length });
    const command = isBinary ? null : /^close:(\d+):(.*)$/s.exec(data.toString());
    if (command) {
      ws.close(Number(command[1]), command[2]);
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
  ws.on('close', (code, reason) => {
    emit({ event: 'close', id, code, reason: reason.toString() });
  });
  ws.on('error', (err) => {
    emit({ event: 'error', id, message: String(err && err.message) });
  });
});

server.on('listening', () => emit({ event: 'listening', port: server.address().port }));
server.on('error', (err) => {
  process.stderr.write(`ws_backend: ${err.stack || err}\n`);
  process.exit(1);
});

// SIGTERM from the test's teardown: stop at once.
process.on('SIGTERM', () => process.exit(0));
