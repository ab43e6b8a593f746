/**
 * Moved to cli/stdin.ts (the command line is product code); kept so the test workers'
 * import keeps working.
 *
 * @module
 */
export { stdinLines } from "../cli/stdin.ts";
