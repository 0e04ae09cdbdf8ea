import type { Registry } from 'prom-client';

type Value = { labels: Record<string, string | number>; value: number; metricName: string };

interface Series {
  labels: Record<string, string>;
  counts: Float64Array;
  sum: number;
  count: number;
  record: (value: number) => void;
}

/**
 * A histogram with pre-resolved label sets for the L1-hit path: a record is a bucket search and three additions,
 * no label hashing or allocation (prom-client's costs more than the rest of a hit). Renders like prom-client's.
 */
export class FastHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #buckets: Float64Array;
  readonly #series = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelName: string,
    buckets: readonly number[],
    registry: Registry,
  ) {
    this.#buckets = Float64Array.from(buckets);
    registry.registerMetric(this as never);
  }

  /** The recorder bound to one label value, made once per value and reused. */
  series(labelValue: string): (value: number) => void {
    const existing = this.#series.get(labelValue);
    if (existing !== undefined) return existing.record;
    const buckets = this.#buckets;
    const s: Series = {
      labels: { [this.labelName]: labelValue },
      counts: new Float64Array(buckets.length),
      sum: 0,
      count: 0,
      record: (value) => {
        for (let i = 0; i < buckets.length; i++) {
          if (value <= buckets[i]!) {
            s.counts[i]!++;
            break;
          }
        }
        s.sum += value;
        s.count++;
      },
    };
    this.#series.set(labelValue, s);
    return s.record;
  }

  /** The prom-client metric protocol: called by the registry at scrape time. */
  get(): { name: string; help: string; type: string; aggregator: string; values: Value[] } {
    const values: Value[] = [];
    for (const s of this.#series.values()) {
      let cumulative = 0;
      this.#buckets.forEach((bound, i) => {
        cumulative += s.counts[i]!;
        values.push({ labels: { ...s.labels, le: bound }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { ...s.labels, le: '+Inf' }, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: s.labels, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    for (const s of this.#series.values()) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}
