/** Helpers for key tests: internal encoders and a seeded key generator. */
export { decodeKey, encodeKey, encodePrefix } from "txtdb/internal";
import { SeededRandom } from "txtdb/adapters/sim";

export class SeededRandomForKeys extends SeededRandom {
  part(): unknown {
    switch (this.int(5)) {
      case 0: return Uint8Array.from({ length: this.int(4) }, () => [0, 1, 255, 7][this.int(4)]!);
      case 1: return Array.from({ length: this.int(4) }, () => ["a", "b", "\u0000", "é", "z", "😀"][this.int(6)]).join("");
      case 2: return [0, -1, 1, 0.5, -0.5, 1e10, -1e10, Infinity, -Infinity, 3][this.int(10)]!;
      case 3: return [0n, 1n, -1n, 255n, 256n, -256n, 2n ** 64n, -(2n ** 64n)][this.int(8)]!;
      default: return this.int(2) === 1;
    }
  }
  tuple(): unknown[] {
    return Array.from({ length: 1 + this.int(3) }, () => this.part());
  }
}
export { Histogram } from "txtdb/internal";
