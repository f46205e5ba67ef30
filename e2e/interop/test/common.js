// Messages both interop tests send, and the server's URL (set by run.sh).
import assert from "node:assert/strict";

export const url = process.env.SWITCHBOARD_URL;
assert.ok(url, "SWITCHBOARD_URL is set by e2e/interop/run.sh");

export const MIB = 1 << 20;

// Text that compresses well, of exactly `len` bytes (ASCII).
export function text(len) {
  let s = "";
  for (let i = 0; s.length < len; i++) {
    s += `{"op":"message","channel":"room-${i % 7}","offset":${i},"data":"héllo"}`;
  }
  return s.slice(0, len);
}

// Bytes with a repeating pattern (compressible), of `len` bytes.
export function bytes(len) {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = (i * 7) % 251;
  return out;
}
