/**
 * "Did you mean …?": the known name a misspelt one was probably meant to be, for the
 * messages of a misspelt option (`timeoutMS`, `isolaton`) and of the command line's
 * commands and flags. One rule for both, so that the library and its CLI suggest alike.
 *
 * @module
 */

/**
 * The edit distance of `a` and `b`: insertions, deletions, substitutions and swaps of two
 * adjacent characters (`mdoe` is one edit from `mode`), each counting one.
 *
 * @example
 * ```ts
 * editDistance("isolaton", "isolation"); // 1
 * ```
 */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The name of `names` that `word` is probably a misspelling of, if one is close enough:
 * the nearest ignoring case, when at most 2 edits away and at most a third of its length
 * (at least 1); else the one name `word` begins, if exactly one does and `word` has two
 * characters or more. Otherwise undefined: a far guess misleads more than none.
 *
 * @example
 * ```ts
 * didYouMean("timeoutMS", ["isolation", "timeoutMs"]); // "timeoutMs"
 * didYouMean("xyz", ["isolation", "timeoutMs"]);       // undefined
 * ```
 */
export function didYouMean(word: string, names: readonly string[]): string | undefined {
  const lower = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const n of names) {
    const dist = editDistance(lower, n.toLowerCase());
    if (dist < bestDistance) [best, bestDistance] = [n, dist];
  }
  if (best !== undefined && bestDistance <= Math.min(2, Math.max(1, Math.floor(best.length / 3)))) return best;
  const prefixed = names.filter((n) => lower.length >= 2 && n.toLowerCase().startsWith(lower));
  return prefixed.length === 1 ? prefixed[0] : undefined;
}
