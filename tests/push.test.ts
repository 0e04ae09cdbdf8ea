import { afterEach, describe, expect, it } from 'vitest';
import { CoalescingCache } from '../src/engine/engine.js';
import { createProxyApp } from '../src/http/app.js';
import { NOT_FOUND } from '../src/engine/options.js';
import { InMemoryTier, InMemoryTierStore } from '../src/shared-tier/memory/in-memory-tier.js';
import { decodeEventId } from '../src/push/event-id.js';
import { PushHub, type PushSink } from '../src/push/hub.js';
import { ManualClock } from '../src/util/clock.js';
import { until } from './helpers/until.js';

/**
 * The push hub over engines sharing an in-memory tier: sinks that record
 * what they are given, an origin whose profiles carry a version a change
 * bumps, and counts of origin calls.
 */
type Profile = { id: number; version: number };

const closing: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const close of closing.splice(0)) await close();
});

interface RecordingSink extends PushSink {
  frames: string[];
  events(): { id: string; event: string; data: unknown }[];
  ended: string | undefined;
  dropped: boolean;
  backlog: number;
}

function recordingSink(): RecordingSink {
  const sink: RecordingSink = {
    frames: [],
    ended: undefined,
    dropped: false,
    backlog: 0,
    write(bytes) {
      sink.frames.push(bytes.toString());
    },
    get bufferedBytes() {
      return sink.backlog;
    },
    end(last) {
      sink.ended = last?.toString() ?? '';
    },
    drop() {
      sink.dropped = true;
    },
    events() {
      return sink.frames
        .filter((frame) => frame.startsWith('id: '))
        .map((frame) => {
          const [id, event, data] = frame.split('\n');
          return { id: id!.slice(4), event: event!.slice(7), data: JSON.parse(data!.slice(6)) as unknown };
        });
    },
  };
  return sink;
}

function setup(options: { instances?: number; maxSubscribers?: number; missing?: Set<string> } = {}) {
  const clock = new ManualClock();
  const store = new InMemoryTierStore({ now: () => clock.now() });
  const versions = new Map<string, number>();
  const calls: string[] = [];
  const missing = options.missing ?? new Set<string>();
  const instances = Array.from({ length: options.instances ?? 1 }, () => {
    const tier = new InMemoryTier({ store });
    const engine = new CoalescingCache<Profile>({
      l2: tier,
      clock,
      ttlJitter: 0,
      load: async (key) => {
        calls.push(key);
        return missing.has(key) ? NOT_FOUND : { id: Number(key), version: versions.get(key) ?? 1 };
      },
    });
    const hub = new PushHub({ engine, clock, maxSubscribers: options.maxSubscribers, heartbeatMs: 15_000 });
    closing.push(async () => {
      hub.close();
      await engine.close();
      await tier.close();
    });
    return { engine, tier, hub };
  });
  return {
    clock,
    store,
    calls,
    instances,
    change: async (key: string, through = 0) => {
      versions.set(key, (versions.get(key) ?? 1) + 1);
      await instances[through]!.engine.invalidate(key);
    },
    missing,
  };
}

describe('PushHub', () => {
  it('sends the current profile first, then one event per change, in order, every subscriber from one load per change', async () => {
    const t = setup();
    const { hub } = t.instances[0]!;
    const sinks = Array.from({ length: 100 }, () => recordingSink());
    for (const sink of sinks) hub.subscribe(['7'], sink);
    await until(() => sinks.every((sink) => sink.events().length === 1), 'every first event', 5000);
    expect(t.calls).toEqual(['7']);
    for (let i = 0; i < 5; i++) {
      await t.change('7');
      await until(() => sinks.every((sink) => sink.events().length === i + 2), `change ${i} at every subscriber`, 5000);
    }
    for (const sink of sinks)
      expect(sink.events().map((e) => [e.event, (e.data as Profile).version])).toEqual([
        ['profile', 1],
        ['profile', 2],
        ['profile', 3],
        ['profile', 4],
        ['profile', 5],
        ['profile', 6],
      ]);
    expect(t.calls).toHaveLength(6); // one load per change for all 100
    expect(new Set(sinks.map((sink) => sink.frames.at(-1))).size).toBe(1); // the same bytes
  });

  it('loads a change once for a fleet: subscribers on two instances, one origin call per change', async () => {
    const t = setup({ instances: 2 });
    const sinks = t.instances.map(({ hub }) => {
      const sink = recordingSink();
      hub.subscribe(['8'], sink);
      return sink;
    });
    await until(() => sinks.every((sink) => sink.events().length === 1), 'first events', 5000);
    for (let i = 0; i < 3; i++) {
      await t.change('8', i % 2);
      await until(() => sinks.every((sink) => sink.events().length === i + 2), 'the change on both', 5000);
    }
    expect(sinks.map((sink) => sink.events().map((e) => (e.data as Profile).version))).toEqual([
      [1, 2, 3, 4],
      [1, 2, 3, 4],
    ]);
    expect(t.calls).toHaveLength(4);
  });

  it('resumes from a Last-Event-ID: the current profile of groups that changed since, nothing for the others', async () => {
    const t = setup();
    const { hub } = t.instances[0]!;
    const first = recordingSink();
    const { subscription } = hub.subscribe(['1', '2', '3'], first) as { subscription: { close(): void } };
    await until(() => first.events().length === 3, 'three first events', 5000);
    await t.change('1');
    await until(() => first.events().length === 4, 'a change', 5000);
    const lastId = first.events().at(-1)!.id;
    subscription.close();
    for (let i = 0; i < 3; i++) await t.change('2'); // missed: three changes of group 2
    expect(t.calls.filter((id) => id === '2')).toEqual(['2']); // no subscriber: no load for those changes
    const again = recordingSink();
    hub.subscribe(['1', '2', '3'], again, decodeEventId(lastId));
    await until(() => again.events().length === 1, 'the missed change', 5000);
    expect(again.events()).toEqual([expect.objectContaining({ event: 'profile', data: { id: 2, version: 4 } })]);
  });

  it('sends a resync when the position resumed from has left the feed, or belongs to another epoch', async () => {
    const t = setup();
    const { hub } = t.instances[0]!;
    const first = recordingSink();
    hub.subscribe(['4'], first);
    await t.change('4');
    await until(() => first.events().length === 2, 'two events', 5000);
    const lastId = first.events().at(-1)!.id;
    for (let i = 0; i < 5; i++) await t.change('5');
    t.store.trim(1);
    const trimmed = recordingSink();
    hub.subscribe(['4'], trimmed, decodeEventId(lastId));
    await until(() => trimmed.events().length === 1, 'the resync', 5000);
    expect(trimmed.events()[0]).toMatchObject({ event: 'resync', data: { id: 4, version: 2 } });

    t.store.restart();
    await until(
      () => first.events().some((e) => e.event === 'resync'),
      'the flush pushed to current subscribers',
      5000,
    );
    const otherEpoch = recordingSink();
    hub.subscribe(['4'], otherEpoch, decodeEventId(lastId));
    await until(() => otherEpoch.events().length === 1, 'the resync after a new epoch', 5000);
    expect(otherEpoch.events()[0]!.event).toBe('resync');
  });

  it('pushes a dissolved group as deleted', async () => {
    const t = setup();
    const { hub } = t.instances[0]!;
    const sink = recordingSink();
    hub.subscribe(['9'], sink);
    await until(() => sink.events().length === 1, 'first', 5000);
    t.missing.add('9');
    await t.instances[0]!.engine.invalidate('9', { kind: 'deleted' });
    await until(() => sink.events().length === 2, 'the deletion', 5000);
    expect(sink.events()[1]).toMatchObject({ event: 'deleted', data: { id: '9' } });
  });

  it('drops a subscriber that leaves more than maxBufferedBytes unread; the others get every event', async () => {
    const t = setup();
    const { hub } = t.instances[0]!;
    const slow = recordingSink();
    const fine = recordingSink();
    hub.subscribe(['6'], slow);
    hub.subscribe(['6'], fine);
    await until(() => fine.events().length === 1, 'first', 5000);
    slow.backlog = 64 * 1024 + 1;
    await t.change('6');
    await until(() => fine.events().length === 2, 'the change', 5000);
    expect(slow.dropped).toBe(true);
    expect(slow.events()).toHaveLength(1);
    expect(hub.subscribers).toBe(1);
    await t.change('6');
    await until(() => fine.events().length === 3, 'the next change', 5000);
  });

  it('writes one heartbeat to idle streams per interval from one timer, and ends streams with a retry hint on close', async () => {
    const t = setup();
    const { hub } = t.instances[0]!;
    const sinks = [recordingSink(), recordingSink()];
    for (const sink of sinks) hub.subscribe(['3'], sink);
    await until(() => sinks.every((sink) => sink.events().length === 1), 'first', 5000);
    const pending = t.clock.pending;
    t.clock.advance(15_000);
    expect(t.clock.pending).toBe(pending); // the one timer, rescheduled
    for (const sink of sinks) expect(sink.frames.filter((frame) => frame === ':\n\n')).toHaveLength(1);
    hub.close();
    for (const sink of sinks) expect(sink.ended).toBe('retry: 1000\n\n');
  });

  it('refuses subscribers over maxSubscribers, and loads nothing for them', async () => {
    const t = setup({ maxSubscribers: 2 });
    const { hub } = t.instances[0]!;
    expect(hub.subscribe(['1'], recordingSink())).toHaveProperty('subscription');
    expect(hub.subscribe(['2'], recordingSink())).toHaveProperty('subscription');
    expect(hub.subscribe(['3'], recordingSink())).toEqual({ refused: 'subscribers' });
    await until(() => t.calls.length === 2, 'the two first loads', 5000);
    expect(t.calls.sort()).toEqual(['1', '2']);
  });

  it('gives code the same stream as an async iterator, resumable from an event id', async () => {
    const t = setup();
    const { hub } = t.instances[0]!;
    const controller = new AbortController();
    const seen: { type: string; version: number; id: string }[] = [];
    const reading = (async () => {
      for await (const event of hub.events(['11'], { signal: controller.signal })) {
        seen.push({ type: event.type, version: (event.data as Profile).version, id: event.id });
        if (seen.length === 3) controller.abort();
      }
    })();
    await until(() => seen.length === 1, 'first', 5000);
    await t.change('11');
    await until(() => seen.length === 2, 'second', 5000);
    await t.change('11');
    await reading;
    expect(seen.map(({ type, version }) => [type, version])).toEqual([
      ['profile', 1],
      ['profile', 2],
      ['profile', 3],
    ]);
    expect(hub.subscribers).toBe(0);
    await expect(hub.events(['1', '1']).next()).rejects.toThrow(TypeError);
  });
});

describe('the event routes in any Hono app (createProxyApp({ push }))', () => {
  it('streams the current profile and changes through app.request, and answers bad input with JSON errors', async () => {
    const t = setup();
    const { engine, hub } = t.instances[0]!;
    const app = createProxyApp({ engine, push: hub });
    const response = await app.request('/groups/21/events');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const reader = response.body!.getReader();
    let text = '';
    const readUntil = async (pattern: RegExp): Promise<void> => {
      while (!pattern.test(text)) text += Buffer.from((await reader.read()).value!).toString();
    };
    await readUntil(/event: profile\ndata: \{"id":21,"version":1\}/);
    await t.change('21');
    await readUntil(/"version":2/);
    expect(text.startsWith(': open\n\n')).toBe(true);
    await reader.cancel();
    await until(() => hub.subscribers === 0, 'the cancelled stream gone', 5000);

    for (const [path, headers, code] of [
      ['/groups/021/events', {}, 'INVALID_GROUP_ID'],
      ['/events?groups=', {}, 'BAD_REQUEST'],
      ['/events?groups=1,1', {}, 'BAD_REQUEST'],
      ['/events?groups=1&groups=2', {}, 'BAD_REQUEST'],
      ['/groups/1/events', { 'last-event-id': 'x' }, 'BAD_LAST_EVENT_ID'],
    ] as const) {
      const bad = await app.request(path, { headers });
      expect(bad.status, path).toBe(400);
      expect(await bad.json()).toMatchObject({ error: { code } });
    }
    expect((await app.request('/events?groups=1', { method: 'DELETE' })).status).toBe(405);
    expect(t.calls).toEqual(['21', '21']);
  });
});

describe('defects found in review (each failed before its fix)', () => {
  it('answers HEAD on the event routes with 405 and holds no subscriber', async () => {
    const t = setup();
    const { engine, hub } = t.instances[0]!;
    const app = createProxyApp({ engine, push: hub });
    for (const path of ['/events?groups=1', '/groups/1/events']) {
      const response = await app.request(path, { method: 'HEAD' });
      expect(response.status, path).toBe(405);
      expect(response.headers.get('allow')).toBe('GET');
    }
    expect(hub.subscribers).toBe(0);
  });

  it('never gives an event id that covers a change whose other groups are still to be sent (resume loses none)', async () => {
    const t = setup();
    const { hub, engine } = t.instances[0]!;
    const sink = recordingSink();
    hub.subscribe(['31', '32'], sink);
    await until(() => sink.events().length === 2, 'first events', 5000);
    await engine.invalidate(['31', '32']);
    await until(() => sink.events().length === 4, 'both change events', 5000);
    // A client that got only the first of the two change events and reconnected:
    const firstOfChange = sink.events()[2]!;
    const resumed = recordingSink();
    hub.subscribe(['31', '32'], resumed, decodeEventId(firstOfChange.id));
    await until(() => resumed.events().length >= 1, 'what was missed', 5000);
    const missedGroup = (sink.events()[3]!.data as Profile).id;
    expect(resumed.events().map((e) => (e.data as Profile).id)).toContain(missedGroup);
  });

  it('keeps sending a group after a write to one of its subscribers throws', async () => {
    const t = setup();
    const { hub } = t.instances[0]!;
    const broken = recordingSink();
    const fine = recordingSink();
    hub.subscribe(['33'], broken);
    hub.subscribe(['33'], fine);
    await until(() => fine.events().length === 1, 'first', 5000);
    broken.write = () => {
      throw new Error('a sink that breaks');
    };
    await t.change('33');
    await t.change('33');
    await until(() => fine.events().length === 3, 'both changes at the sound subscriber', 5000);
  });

  it('sends a profile whose body holds a raw newline as one data line, never extra fields', async () => {
    const clock = new ManualClock();
    const engine = new CoalescingCache<{ id: number; notice: string }>({
      clock,
      load: async (key) => ({ id: Number(key), notice: 'line one' }),
      serialize: (value) => Buffer.from(JSON.stringify(value, null, 1)), // pretty-printed: raw newlines
    });
    const hub = new PushHub({ engine, clock });
    closing.push(async () => {
      hub.close();
      await engine.close();
    });
    const sink = recordingSink();
    hub.subscribe(['34'], sink);
    await until(() => sink.frames.length === 2, 'first event', 5000);
    const frame = sink.frames[1]!;
    expect(frame.split('\n').filter((line) => line.startsWith('data: '))).toHaveLength(1);
    expect(frame.split('\n').filter((line) => line !== '' && !/^(id|event|data): /.test(line))).toEqual([]);
    expect(JSON.parse(frame.split('\n')[2]!.slice(6))).toEqual({ id: 34, notice: 'line one' });
  });
});

describe("an invalidation the feed could not take (failed before: this instance's own subscribers never heard of it)", () => {
  it("still reaches this instance's subscribers", async () => {
    const t = setup();
    const { hub, engine, tier } = t.instances[0]!;
    const sink = recordingSink();
    hub.subscribe(['41'], sink);
    await until(() => sink.events().length === 1, 'first', 5000);
    await tier.close(); // Redis gone: nothing can be appended
    expect((await engine.invalidate('41')).fleet).toBe(false);
    await until(() => sink.events().length === 2, 'the local change pushed', 5000);
  });
});
