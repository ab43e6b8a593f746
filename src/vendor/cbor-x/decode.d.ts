// Types of the parts of cbor-x's decode.js that txtdb uses (after cbor-x 1.6.9's index.d.ts,
// with Uint8Array for Node's Buffer so that every runtime type-checks it). MIT License, see LICENSE.

/** Decoder options (txtdb passes its own; see src/codec.ts). */
export interface Options {
  useRecords?: boolean;
  mapsAsObjects?: boolean;
  tagUint8Array?: boolean;
  structuredClone?: boolean;
  int64AsNumber?: boolean;
  largeBigIntToFloat?: boolean;
  copyBuffers?: boolean;
}

/** A CBOR extension: a class and the tag its instances are written under. */
export interface Extension<T, R> {
  Class: new (...args: never[]) => T;
  tag: number;
  encode(value: T, encodeFn: (data: R) => Uint8Array): Uint8Array | void;
  decode(item: R): unknown;
}

/** Decodes CBOR. */
export class Decoder {
  constructor(options?: Options);
  decode(bytes: Uint8Array): unknown;
}

/** A tagged item no extension decodes. */
export class Tag {
  constructor(value: unknown, tagNumber: number);
  value: unknown;
  tag: number;
}

/** Registers an extension with the decoder. */
export function addExtension<T, R>(extension: Extension<T, R>): void;
