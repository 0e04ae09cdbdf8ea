/**
 * V8 flags the sidecar is started with (Dockerfile CMD, `npm start`; the
 * deploy tests check both carry exactly these). They trade a little CPU for
 * a resident set close to the cached bytes; measured with
 * `npm run bench -- memory` (100k profiles of 1.4 KB) on Node 20:
 *
 * - `--max-semi-space-size=2`: the young generation stays at a few MB instead
 *   of growing to 3 × 16 MB under load. Request garbage dies young either way;
 *   scavenges get more frequent but not longer.
 * - `--heap-growing-percent=20`: the next full GC runs once the old
 *   generation has grown 20% past what survived the last one, not up to 4×;
 *   L1's index is the only long-lived data, so major GCs stay rare.
 *
 * Without them: RSS ~310 MB for 100k cached profiles; with them ~250 MB.
 * Neither caps the heap, so a larger L1 never runs out of heap.
 */
export const SIDECAR_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--heap-growing-percent=20'];
