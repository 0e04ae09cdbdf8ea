import { afterEach, describe, expect, it } from 'vitest';
import { spawnEntry, type Spawned } from './helpers/spawn.js';

let running: Spawned | undefined;
afterEach(() => {
  running?.child.kill('SIGKILL');
  running = undefined;
});

describe('npm start (src/cli.ts)', () => {
  it('serves from the built-in mock backend when UPSTREAM_URL is unset, says so first, and exits 0 on SIGTERM', async () => {
    running = spawnEntry('src/cli.ts', { PORT: '0', HOST: '127.0.0.1' });
    const listening = JSON.parse(await running.waitForLine(/listening/)) as { url: string };
    const first = JSON.parse(running.lines[0]!) as { msg: string };
    expect(first.msg).toMatch(/UPSTREAM_URL is not set: serving from the built-in mock backend/);

    const response = await fetch(`${listening.url}/groups/42`);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ id: 42 });

    running.child.kill('SIGTERM');
    expect(await running.exited).toBe(0);
  });

  it.each([
    ['PORT', 'eighty', /invalid PORT="eighty": expected an integer in \[0, 65535\]/],
    ['TTL_JITTER', '2', /invalid TTL_JITTER="2": expected a number in \[0, 0.5\]/],
    ['UPSTREAM_URL', 'ftp://x', /invalid UPSTREAM_URL="ftp:\/\/x": expected a http: or https: URL/],
    ['LOG_LEVEL', 'loud', /invalid LOG_LEVEL="loud": expected one of/],
  ])('refuses to start with an invalid %s and names it', async (variable, value, message) => {
    running = spawnEntry('src/cli.ts', { PORT: '0', [variable]: value });
    expect(await running.exited).toBe(1);
    expect(running.lines.join('\n')).toMatch(message);
  });
});
