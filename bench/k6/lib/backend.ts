// Helpers shared by the k6 scenarios: the mock backend's call counters, read
// in setup() and teardown() to count downstream calls. Only k6's own modules.
// teardown() can't hand data to handleSummary(), but metrics it adds are in
// the end-of-test summary (and its thresholds), so the counts go into Counters.
import http from 'k6/http';
import { Counter } from 'k6/metrics';
import { distinctIdsAsked } from './summary.ts';

/** Downstream calls the group-profile backend received during the test (its /__stats, after minus before). */
export const downstreamCalls = new Counter('downstream_calls');

/** Distinct ids the backend was asked for during the test (its /__stats byId, ids whose count rose); zipf only. */
export const downstreamDistinctIds = new Counter('downstream_distinct_ids');

/** Profile requests sent to the proxies (setup and control requests excluded). */
export const profileRequests = new Counter('profile_requests');

/** The part of the mock backend's /__stats the scenarios read. */
export interface BackendStats {
  /** Every /groups* request (single and batch). */
  calls: number;
  /** Times each id was asked for (once per batch call that named it). */
  byId: Record<string, number>;
}

export function backendStats(backendUrl: string): BackendStats {
  const response = http.get(`${backendUrl}/__stats`, { tags: { name: 'backend-stats' } });
  if (response.status !== 200)
    throw new Error(`${backendUrl}/__stats answered ${response.status}: is BACKEND_URL the mock backend?`);
  return response.json() as unknown as BackendStats;
}

export function setBackendMode(backendUrl: string, mode: string, latencyMs?: number): void {
  const body = JSON.stringify(latencyMs === undefined ? { mode } : { mode, latencyMs });
  const response = http.post(`${backendUrl}/__mode`, body, {
    headers: { 'content-type': 'application/json' },
    tags: { name: 'backend-mode' },
  });
  if (response.status !== 204) throw new Error(`setting mode ${mode} failed: ${response.status}`);
}

/** The group a burst asks for: GROUP_ID, or a random id no earlier run is likely to have cached. */
export function coldGroupId(): string {
  return __ENV.GROUP_ID || String(1_000_000 + Math.floor(Math.random() * 9_000_000));
}

/** In teardown: records the downstream calls since setup, so thresholds and the summary can use them; returns the stats read. */
export function recordDownstream(backendUrl: string, before: BackendStats): BackendStats {
  const after = backendStats(backendUrl);
  downstreamCalls.add(after.calls - before.calls);
  return after;
}

/** In teardown: recordDownstream, plus the distinct ids asked since setup, for the summary's calls per distinct id. */
export function recordDownstreamPerId(backendUrl: string, before: BackendStats): void {
  const after = recordDownstream(backendUrl, before);
  downstreamDistinctIds.add(distinctIdsAsked(before.byId, after.byId));
}
