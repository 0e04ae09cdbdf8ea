/**
 * Embedding: the group-profile routes mounted in your own Hono app, next to
 * your own routes. Run: `npx tsx examples/embed-hono.ts` (starts the mock backend too).
 *
 * In your app: `npm install group-profile-proxy hono @hono/node-server` (hono and
 * @hono/node-server are peer dependencies: the package uses your app's copies),
 * and "type": "module" in its package.json (this file uses top-level await and
 * import.meta). tests/package.test.ts type-checks and runs it that way.
 */
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import {
  createGroupProfileCache,
  groupProfileRoutes,
  startMockBackend,
  type GroupProfileCache,
} from 'group-profile-proxy';

export function createApp(upstreamUrl: string): { app: Hono; profiles: GroupProfileCache } {
  const profiles = createGroupProfileCache({ upstream: { url: upstreamUrl }, ttlMs: 30_000 });
  const app = new Hono();
  app.get('/', (c) => c.text('my app'));
  app.route('/api/groups', groupProfileRoutes({ engine: profiles.engine }));
  return { app, profiles };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const backend = await startMockBackend({ port: 0 });
  const { app } = createApp(backend.url);
  serve({ fetch: app.fetch, port: 3000 }, () => console.log('try: curl localhost:3000/api/groups/42'));
}
