/**
 * A custom id rule: this deployment's group ids are 5 to 12 digits, so
 * anything else is rejected with 400 before any lookup.
 */
import { Hono } from 'hono';
import { CoalescingCache, groupProfileRoutes, type Loader } from 'group-profile-proxy';

export const TENANT_ID = /^[1-9][0-9]{4,11}$/;

export function createApp(load: Loader<unknown>): Hono {
  const engine = new CoalescingCache({ load });
  return new Hono().route(
    '/groups',
    groupProfileRoutes({ engine, parseId: (raw) => (TENANT_ID.test(raw) ? raw : undefined) }),
  );
}
