/**
 * V8 flags of the sidecar (Dockerfile CMD and `npm start`, checked by the deploy tests): a little CPU for a resident
 * set close to the cached bytes. `npm run bench -- memory` (100k profiles of 1.4 KB, Node 20): RSS ~310 MB → ~250 MB.
 * - `--max-semi-space-size=2`: a young generation of a few MB, not 3 × 16 MB; request garbage dies young either way.
 * - `--heap-growing-percent=20`: a full GC once the old generation grew 20%, not up to 4×; L1's index is the only
 *   long-lived data, so major GCs stay rare.
 * Neither caps the heap, so a larger L1 never runs out of heap.
 */
export const SIDECAR_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--heap-growing-percent=20'];
