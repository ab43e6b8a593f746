// Types of the parts of cbor-x's encode.js that txtdb uses (after cbor-x 1.6.9's index.d.ts,
// with Uint8Array for Node's Buffer so that every runtime type-checks it). MIT License, see LICENSE.
import { Decoder } from "./decode.js";
import type { Extension } from "./decode.js";

/** Encodes CBOR. */
export class Encoder extends Decoder {
  encode(value: unknown): Uint8Array;
}

/** Registers an extension with the encoder and the decoder. */
export function addExtension<T, R>(extension: Extension<T, R>): void;
