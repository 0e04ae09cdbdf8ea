import { connect } from 'node:net';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { startMockBackend, type RunningMockBackend } from '../src/mock-backend/server.js';
import { startSidecar, type RunningSidecar } from '../src/server/sidecar.js';
import type { SidecarConfig } from '../src/server/config.js';
import { rawRedis } from './helpers/feed.js';
import { uniquePrefix } from './helpers/fleet.js';
import { openStream, type SseStream } from './helpers/sse.js';
import { until } from './helpers/until.js';
import { comparePositions } from '../src/shared-tier/contract.js';

/**
 * Event streams over real sockets: sidecars sharing a real redis-server and
 * one mock backend whose profiles carry a revision each change bumps.
 */
let backend: RunningMockBackend | undefined;
const proxies: RunningSidecar[] = [];
const streams: SseStream[] = [];
afterEach(async () => {
  for (const stream of streams.splice(0)) stream.close();
  for (const proxy of proxies.splice(0)) await proxy.close();
  await backend?.close();
  backend = undefined;
});

async function fleet(
  count: number,
  config: Partial<SidecarConfig> = {},
): Promise<{ proxies: RunningSidecar[]; prefix: string }> {
  backend = await startMockBackend({ latencyMs: 0, latencyJitterMs: 0 });
  const prefix = uniquePrefix();
  for (let i = 0; i < count; i++) {
    proxies.push(
      await startSidecar({
        port: 0,
        host: '127.0.0.1',
        logLevel: 'silent',
        upstreamUrl: backend.url,
        redisUrl: inject('redisUrl'),
        redisPrefix: prefix,
        redisCommandTimeoutMs: 2000,
        ...config,
      }),
    );
  }
  return { proxies: [...proxies], prefix };
}

async function open(url: string, headers?: Record<string, string>): Promise<SseStream> {
  const stream = await openStream(url, headers);
  streams.push(stream);
  return stream;
}

const revision = (stream: SseStream, i: number): number =>
  (JSON.parse(stream.events[i]!.data) as { revision: number }).revision;

describe('event streams across a fleet', () => {
  it('gives 1000 subscribers over 2 instances exactly 10 change events each, in order, with 10 origin calls for the fleet', async () => {
    const {
      proxies: [a, b],
    } = await fleet(2);
    const subscribers = await Promise.all(
      Array.from({ length: 1000 }, (_, i) => open(`${(i % 2 === 0 ? a : b)!.url}/groups/42/events`)),
    );
    expect(
      subscribers.every((s) => s.status === 200 && s.headers['content-type']?.startsWith('text/event-stream')),
    ).toBe(true);
    await until(() => subscribers.every((s) => s.events.length === 1), 'every first event', 20_000);
    const callsBefore = backend!.backend.stats().calls;
    for (let change = 1; change <= 10; change++) {
      backend!.backend.touch(42);
      await (change % 2 === 0 ? a : b)!.cache.engine.invalidate('42');
      await until(
        () => subscribers.every((s) => s.events.length === change + 1),
        `change ${change} at every subscriber`,
        20_000,
      );
    }
    expect(backend!.backend.stats().calls - callsBefore).toBe(10);
    for (const s of subscribers) {
      expect(s.events.map((e) => e.event)).toEqual(Array(11).fill('profile'));
      expect(s.events.map((_, i) => revision(s, i))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    }
    expect(a!.push.subscribers + b!.push.subscribers).toBe(1000);
  }, 60_000);

  it('resumes with Last-Event-ID: after 3 missed changes the current profile; after the feed was trimmed past it, a resync', async () => {
    const {
      proxies: [a, b],
      prefix,
    } = await fleet(2);
    const first = await open(`${a!.url}/groups/7/events`);
    await until(() => first.events.length === 1, 'first event', 10_000);
    backend!.backend.touch(7);
    await a!.cache.engine.invalidate('7');
    await until(() => first.events.length === 2, 'a change', 10_000);
    const lastId = first.events[1]!.id;
    first.close();
    let appended = '';
    for (let i = 0; i < 3; i++) {
      backend!.backend.touch(7);
      appended = (await b!.cache.engine.invalidate('7')).positions[0]!.position;
    }
    // b has read its own changes back from the feed (so its hub knows them) before anyone resumes:
    // otherwise a resume could get the missed change twice, once as missed, once as it arrives.
    const shard = b!.l2!.shardOf('7');
    await until(
      () => comparePositions(b!.l2!.feedPositions()[shard]!.position || '0-0', appended) >= 0,
      'b caught up',
      10_000,
    );
    await new Promise((resolve) => setImmediate(resolve));
    // Reconnecting to the other instance: it tells what was missed from the same feed.
    const resumed = await open(`${b!.url}/groups/7/events`, { 'last-event-id': lastId });
    await until(() => resumed.events.length === 1, 'the missed change', 10_000);
    expect(resumed.events[0]!.event).toBe('profile');
    expect(revision(resumed, 0)).toBe(4);
    // Nothing missed: nothing sent.
    const upToDate = await open(`${b!.url}/groups/7/events`, { 'last-event-id': resumed.events[0]!.id });
    await until(() => upToDate.raw().includes(': open'), 'the stream open', 10_000);

    const raw = rawRedis({ url: inject('redisUrl') });
    try {
      const stream = a!.l2!.feedKeys[0]!.changes;
      const burst = raw.multi();
      for (let i = 0; i < 200; i++)
        burst.xadd(stream, '*', 'kind', 'changed', 'ids', String(900 + i), 'producer', 'bulk');
      burst.xtrim(stream, 'MAXLEN', 10);
      await burst.exec();
    } finally {
      raw.disconnect();
    }
    void prefix;
    const trimmed = await open(`${a!.url}/groups/7/events`, { 'last-event-id': lastId });
    // (The instance itself was trimmed past too, and may push a resync of its own after it.)
    await until(() => trimmed.events.length >= 1, 'the resync', 10_000);
    expect(trimmed.events[0]!.event).toBe('resync');
    expect(revision(trimmed, 0)).toBe(4);
    expect(upToDate.events.filter((e) => e.event === 'profile')).toEqual([]);
  }, 30_000);

  it('follows several groups on one connection, and pushes a dissolved group as deleted', async () => {
    const {
      proxies: [a],
    } = await fleet(1);
    const stream = await open(`${a!.url}/events?groups=11,12,13`);
    await until(() => stream.events.length === 3, 'three first events', 10_000);
    expect(new Set(stream.events.map((e) => (JSON.parse(e.data) as { id: number }).id))).toEqual(new Set([11, 12, 13]));
    backend!.backend.touch(12);
    await a!.cache.engine.invalidate('12');
    await until(() => stream.events.length === 4, 'the change of 12', 10_000);
    expect(JSON.parse(stream.events[3]!.data)).toMatchObject({ id: 12, revision: 1 });
  });
});

describe('a subscriber that never reads', () => {
  it('is dropped at its bound; the others receive every event and the proxy lets go of the backlog', async () => {
    // Rounds of 20 events (~25 KB) against the default 64 KiB bound: the reader, which takes each
    // round before the next is sent, never has more than one round unread (the kernel holds that).
    const {
      proxies: [a],
    } = await fleet(1);
    const groups = Array.from({ length: 20 }, (_, i) => String(2000 + i));
    const path = `/events?groups=${groups.join(',')}`;
    const reader = await open(`${a!.url}${path}`);
    // A raw socket that sends the request and then never reads a byte.
    const { port } = new URL(a!.url);
    const stuck = connect(Number(port), '127.0.0.1');
    let stuckClosed = false;
    stuck.on('close', () => (stuckClosed = true));
    stuck.on('error', () => (stuckClosed = true));
    stuck.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`);
    stuck.pause();
    await until(
      () => a!.push.subscribers === 2 && reader.events.length === 20,
      'both subscribed, first events read',
      10_000,
    );
    let changes = 0;
    // Until the kernel's buffers and then Node's are full and the hub drops it (a few MB on loopback).
    while (a!.push.subscribers === 2 && changes < 3000) {
      for (const id of groups) backend!.backend.touch(Number(id));
      await a!.cache.engine.invalidate(groups);
      changes++;
      await until(() => reader.events.length >= 20 * (changes + 1), `round ${changes} at the reader`, 10_000);
    }
    expect(a!.push.subscribers).toBe(1);
    // The server closed its end: once the stuck client reads again, it reaches the end of what was sent.
    stuck.resume();
    await until(() => stuckClosed, 'the stuck client cut off', 10_000);
    expect((await a!.metrics.pushDrops.get()).values).toEqual([
      expect.objectContaining({ labels: { reason: 'slow' }, value: 1 }),
    ]);
    expect(reader.events).toHaveLength(20 * (changes + 1));
    stuck.destroy();
  }, 60_000);
});

describe('stream requests that are refused', () => {
  it.each([
    ['a malformed id', '/groups/042/events', {}, 400, 'INVALID_GROUP_ID'],
    ['no groups', '/events', {}, 400, 'BAD_REQUEST'],
    ['a duplicate group', '/events?groups=1,2,1', {}, 400, 'BAD_REQUEST'],
    // One rule with the multi-get's ids: a list parameter given twice is refused, not half-read.
    ['groups given twice', '/events?groups=1&groups=2', {}, 400, 'BAD_REQUEST'],
    ['a percent-encoded id', '/events?groups=%31', {}, 400, 'INVALID_GROUP_ID'],
    [
      'too many groups',
      `/events?groups=${Array.from({ length: 101 }, (_, i) => i + 1).join(',')}`,
      {},
      400,
      'TOO_MANY_GROUPS',
    ],
    ['a garbage Last-Event-ID', '/groups/1/events', { 'last-event-id': 'not-ours' }, 400, 'BAD_LAST_EVENT_ID'],
  ])('answers %s with a JSON error, no origin call, nothing held open', async (_case, path, headers, status, code) => {
    const {
      proxies: [a],
    } = await fleet(1);
    const response = await fetch(`${a!.url}${path}`, { headers });
    expect(response.status).toBe(status);
    expect(await response.json()).toMatchObject({ error: { code } });
    expect(backend!.backend.stats().calls).toBe(0);
    expect(a!.push.subscribers).toBe(0);
  });

  it('answers 503 TOO_MANY_SUBSCRIBERS with Retry-After over the limit, and 405 to other methods', async () => {
    const {
      proxies: [a],
    } = await fleet(1, { pushMaxSubscribers: 2 });
    await open(`${a!.url}/groups/1/events`);
    await open(`${a!.url}/groups/2/events`);
    await until(() => a!.push.subscribers === 2, 'two streams', 10_000);
    const refused = await fetch(`${a!.url}/groups/3/events`);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('5');
    expect(await refused.json()).toMatchObject({ error: { code: 'TOO_MANY_SUBSCRIBERS' } });
    const posted = await fetch(`${a!.url}/events?groups=1`, { method: 'POST' });
    expect(posted.status).toBe(405);
    expect(posted.headers.get('allow')).toBe('GET');
  });

  it('ends every stream with a retry hint at shutdown', async () => {
    const {
      proxies: [a],
    } = await fleet(1);
    const stream = await open(`${a!.url}/groups/5/events`);
    await until(() => stream.events.length === 1, 'first event', 10_000);
    await a!.close();
    await until(() => stream.ended(), 'the stream ended', 10_000);
    expect(stream.raw()).toMatch(/retry: 1000\n\n$/);
  });
});
