import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';

/*
 * prom-client's classes, each from its own module: its index also loads the Pushgateway, the cluster aggregator
 * and a process-CPU collector requiring @opentelemetry/api (~7 MB resident) for exemplars never recorded here.
 * They are the modules the index re-exports, so a Registry made from `prom-client` works here.
 */
const require = createRequire(import.meta.url);
export const Registry = require('prom-client/lib/registry') as typeof PromClient.Registry;
export const Counter = require('prom-client/lib/counter') as typeof PromClient.Counter;
export const Gauge = require('prom-client/lib/gauge') as typeof PromClient.Gauge;
export const Histogram = require('prom-client/lib/histogram') as typeof PromClient.Histogram;
export type Registry = PromClient.Registry;
export type Counter<T extends string = string> = PromClient.Counter<T>;
export type Gauge<T extends string = string> = PromClient.Gauge<T>;
export type Histogram<T extends string = string> = PromClient.Histogram<T>;

type Collector = (registry: Registry, config: object) => void;

/** prom-client's default collectors other than process CPU (registered below) and GC (opt-in). */
const PROCESS_COLLECTORS = [
  'processStartTime',
  'osMemoryHeap',
  'processOpenFileDescriptors',
  'processMaxFileDescriptors',
  'eventLoopLag',
  // prom-client registers this one only where Node has the API (it has since 17).
  ...(typeof process.getActiveResourcesInfo === 'function' ? ['processResources'] : []),
  'processHandles',
  'processRequests',
  'heapSizeAndUsed',
  'heapSpacesSizeAndUsed',
  'version',
];

/**
 * prom-client's default process metrics, GC optional (tests/metrics.test.ts checks the set equals its own); the
 * process CPU counters are registered here with prom-client's names and help, without OpenTelemetry exemplars.
 */
export function collectProcessMetrics(registry: Registry, prefix: string, gc: boolean): void {
  const config = { register: registry, prefix, eventLoopMonitoringPrecision: 10 };
  for (const name of gc ? [...PROCESS_COLLECTORS, 'gc'] : PROCESS_COLLECTORS)
    (require(`prom-client/lib/metrics/${name}`) as Collector)(registry, config);
  registerProcessCpu(registry, prefix);
}

function registerProcessCpu(registry: Registry, prefix: string): void {
  let last = process.cpuUsage();
  const counter = (name: string, help: string, collect?: () => void): Counter =>
    new Counter({ name: `${prefix}${name}`, help, registers: [registry], collect });
  // One collect updates all three, from one cpuUsage() reading, as prom-client does.
  const user = counter('process_cpu_user_seconds_total', 'Total user CPU time spent in seconds.', () => {
    const now = process.cpuUsage();
    const userSeconds = (now.user - last.user) / 1e6;
    const systemSeconds = (now.system - last.system) / 1e6;
    last = now;
    user.inc(userSeconds);
    system.inc(systemSeconds);
    total.inc(userSeconds + systemSeconds);
  });
  const system = counter('process_cpu_system_seconds_total', 'Total system CPU time spent in seconds.');
  const total = counter('process_cpu_seconds_total', 'Total user and system CPU time spent in seconds.');
}
