/**
 * Standard base64 (RFC 4648, with padding) for etcd's JSON gateway, which carries every
 * key and value as base64. Written out rather than built on `btoa`/`atob`: those take
 * "binary strings" one character per byte, which costs a string per value and a
 * character-by-character copy either way, and they differ in what they reject.
 *
 * @module
 */
import { TxtDbError } from "../errors.ts";

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const DECODE = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) DECODE[ALPHABET.charCodeAt(i)] = i;

/**
 * The base64 text of `bytes`.
 *
 * @example
 * ```ts
 * encodeBase64(new TextEncoder().encode("foo")); // "Zm9v"
 * ```
 */
export function encodeBase64(bytes: Uint8Array): string {
  const parts: string[] = [];
  // Chunks keep String.fromCharCode's argument list short (engines cap it near 64k).
  const CHUNK = 3 * 8192;
  for (let start = 0; start < bytes.length; start += CHUNK) {
    const end = Math.min(start + CHUNK, bytes.length);
    const codes: number[] = [];
    let i = start;
    for (; i + 2 < end; i += 3) {
      const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
      codes.push(ALPHABET.charCodeAt(n >> 18), ALPHABET.charCodeAt((n >> 12) & 63), ALPHABET.charCodeAt((n >> 6) & 63), ALPHABET.charCodeAt(n & 63));
    }
    if (i < end) {
      const rest = end - i; // 1 or 2, only in the last chunk (CHUNK is a multiple of 3)
      const n = (bytes[i]! << 16) | (rest === 2 ? bytes[i + 1]! << 8 : 0);
      codes.push(ALPHABET.charCodeAt(n >> 18), ALPHABET.charCodeAt((n >> 12) & 63), rest === 2 ? ALPHABET.charCodeAt((n >> 6) & 63) : 61, 61);
    }
    parts.push(String.fromCharCode(...codes));
  }
  return parts.join("");
}

/**
 * The bytes of base64 `text` (padding optional). Text that is not base64 is a reply etcd
 * cannot have sent: it fails with `UNAVAILABLE` naming what arrived, since the usual cause
 * is something other than etcd answering on that port.
 *
 * @example
 * ```ts
 * new TextDecoder().decode(decodeBase64("Zm9v")); // "foo"
 * ```
 */
export function decodeBase64(text: string): Uint8Array {
  let len = text.length;
  while (len > 0 && text.charCodeAt(len - 1) === 61) len--; // "="
  const out = new Uint8Array(Math.floor((len * 3) / 4));
  let bits = 0;
  let acc = 0;
  let o = 0;
  for (let i = 0; i < len; i++) {
    const c = text.charCodeAt(i);
    const v = c < 128 ? DECODE[c]! : -1;
    if (v < 0) {
      throw new TxtDbError("UNAVAILABLE", `Cannot decode a reply from etcd: ${JSON.stringify(text.slice(0, 40))} is not base64; check that the endpoint is an etcd v3 client URL`);
    }
    acc = ((acc << 6) | v) & 0xffff; // at most 14 live bits
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  return o === out.length ? out : out.subarray(0, o);
}
