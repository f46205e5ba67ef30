// Node's ws client with perMessageDeflate against switchboard serve --mode echo.
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import { MIB, bytes, text, url } from "./common.js";

function open(options) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options);
    let headers;
    ws.on("upgrade", (res) => (headers = res.headers));
    ws.on("open", () => resolve({ ws, headers }));
    ws.on("error", reject);
  });
}

function echo(ws, data, binary) {
  return new Promise((resolve, reject) => {
    ws.once("message", (reply, isBinary) => resolve({ reply, isBinary }));
    ws.once("error", reject);
    ws.send(data, { binary });
  });
}

test("ws negotiates permessage-deflate and gets compressed echoes", async () => {
  // threshold 0: ws compresses even the small messages.
  const { ws, headers } = await open({ perMessageDeflate: { threshold: 0 } });
  // switchboard serve keeps no compressor per connection: server_no_context_takeover.
  const agreed = "permessage-deflate; server_no_context_takeover";
  assert.equal(headers["sec-websocket-extensions"], agreed);
  assert.equal(ws.extensions, "permessage-deflate"); // ws lists the names only
  const cases = [
    ["small text", text(100), false],
    ["large text", text(MIB), false],
    ["small binary", bytes(100), true],
    ["large binary", bytes(MIB), true],
  ];
  for (const [name, data, binary] of cases) {
    const readBefore = ws._socket.bytesRead;
    const writtenBefore = ws._socket.bytesWritten;
    const { reply, isBinary } = await echo(ws, data, binary);
    assert.equal(isBinary, binary, name);
    if (binary) assert.deepEqual(new Uint8Array(reply), data, name);
    else assert.equal(reply.toString("utf8"), data, name);
    if (data.length >= MIB) {
      // Both directions went compressed: far fewer bytes than the message on the wire.
      const read = ws._socket.bytesRead - readBefore;
      const written = ws._socket.bytesWritten - writtenBefore;
      assert.ok(read < data.length / 4, `${name}: ${read} bytes read`);
      assert.ok(written < data.length / 4, `${name}: ${written} bytes written`);
    }
  }
  ws.close(1000);
  await new Promise((resolve) => ws.on("close", (code) => resolve(assert.equal(code, 1000))));
});

test("ws with no context takeover and small windows", async () => {
  const { ws, headers } = await open({
    perMessageDeflate: {
      threshold: 0,
      serverNoContextTakeover: true,
      clientNoContextTakeover: true,
      serverMaxWindowBits: 10,
      clientMaxWindowBits: 9,
    },
  });
  assert.equal(
    headers["sec-websocket-extensions"],
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; " +
      "server_max_window_bits=10; client_max_window_bits=9",
  );
  for (let i = 0; i < 5; i++) {
    const data = text(1000 * (i + 1));
    const { reply } = await echo(ws, data, false);
    assert.equal(reply.toString("utf8"), data);
  }
  ws.close(1000);
});

test("ws without perMessageDeflate gets no extension", async () => {
  const { ws, headers } = await open({ perMessageDeflate: false });
  assert.equal(headers["sec-websocket-extensions"], undefined);
  const { reply } = await echo(ws, text(5000), false);
  assert.equal(reply.toString("utf8"), text(5000));
  ws.close(1000);
});
