// Chromium (Debian's package, driven by playwright-core) against switchboard serve.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { MIB, url } from "./common.js";

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"],
  });
});

after(async () => {
  await browser?.close();
});

test("Chromium negotiates permessage-deflate and gets echoes of text and binary", async () => {
  const page = await browser.newPage();
  // The handshake as the browser saw it, from the DevTools protocol.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  const handshake = new Promise((resolve) =>
    cdp.on("Network.webSocketHandshakeResponseReceived", (e) => resolve(e.response)),
  );
  const result = await page.evaluate(
    async ({ url, MIB }) => {
      const text = (len) => {
        let s = "";
        for (let i = 0; s.length < len; i++) s += `{"n":${i},"data":"héllo wörld"}`;
        return s.slice(0, len);
      };
      const bytes = (len) => {
        const out = new Uint8Array(len);
        for (let i = 0; i < len; i++) out[i] = (i * 7) % 251;
        return out;
      };
      const ws = new WebSocket(url);
      ws.binaryType = "arraybuffer";
      await new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = () => reject(new Error("websocket error"));
      });
      const echo = (data) =>
        new Promise((resolve) => {
          ws.onmessage = (e) => resolve(e.data);
          ws.send(data);
        });
      const checks = {};
      for (const [name, len] of [["small", 100], ["large", MIB]]) {
        const t = text(len);
        checks[`${name} text`] = (await echo(t)) === t;
        const b = bytes(len);
        const back = new Uint8Array(await echo(b));
        checks[`${name} binary`] = back.length === b.length && back.every((x, i) => x === b[i]);
      }
      const extensions = ws.extensions;
      ws.close(1000);
      return { extensions, checks };
    },
    { url, MIB },
  );
  const response = await handshake;
  const headers = Object.fromEntries(
    Object.entries(response.headers).map(([k, v]) => [k.toLowerCase(), v]),
  );
  assert.equal(response.status, 101);
  const agreed = "permessage-deflate; server_no_context_takeover";
  assert.equal(headers["sec-websocket-extensions"], agreed);
  assert.equal(result.extensions, agreed);
  assert.deepEqual(result.checks, {
    "small text": true,
    "small binary": true,
    "large text": true,
    "large binary": true,
  });
  await page.close();
});
