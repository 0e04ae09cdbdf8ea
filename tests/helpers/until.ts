/**
 * Polls `condition` (sync or async) on real timer turns until it holds, and
 * throws after `timeoutMs`: the tests wait on a state (a gate reached, a lease
 * expired, a breaker half-open), never for a fixed time.
 */
export async function until(
  condition: () => boolean | Promise<boolean>,
  what = 'the condition',
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
