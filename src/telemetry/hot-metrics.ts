/**
 * Counter and histogram families for metrics updated on every request. prom-client's labelled children
 * re-validate and re-hash their labels on each inc()/observe(); here a child is resolved once (at config
 * compile time or first use) and updating it is one addition. prom-client still renders them: each
 * family registers itself as a metric of the registry and is read only when /metrics is scraped.
 */
import type { Registry } from 'prom-client';

type Labels = Record<string, string>;

interface Sample {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

interface Rendered {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  values: Sample[];
  aggregator: 'sum';
}

abstract class Family<Child> {
  readonly name: string;
  readonly help: string;
  abstract readonly type: 'counter' | 'histogram';
  protected readonly labelNames: readonly string[];
  protected readonly children = new Map<string, { labels: Labels; child: Child }>();

  constructor(registry: Registry, name: string, help: string, labelNames: readonly string[]) {
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
    registry.registerMetric(this as never);
  }

  protected abstract create(): Child;

  /** The child for these label values (in labelNames order), created on first use. */
  labels(...values: string[]): Child {
    const key = values.join('\u0000');
    let entry = this.children.get(key);
    if (entry === undefined) {
      if (values.length !== this.labelNames.length)
        throw new Error(
          `${this.name}: expected ${this.labelNames.length} label values, got ${values.length}`,
        );
      const labels: Labels = {};
      this.labelNames.forEach((n, i) => (labels[n] = values[i] as string));
      entry = { labels, child: this.create() };
      this.children.set(key, entry);
    }
    return entry.child;
  }

  /** Drops every child whose labels include these (e.g. a removed experiment). */
  remove(match: Labels): void {
    for (const [key, e] of this.children)
      if (Object.entries(match).every(([k, v]) => e.labels[k] === v)) this.children.delete(key);
  }

  /**
   * The children with their labels, for readers inside Faultline (traffic probes, suggestions): no
   * rendered samples (get() builds one labels object per histogram bucket; this builds nothing).
   */
  entries(): Iterable<{ readonly labels: Labels; readonly child: Child }> {
    return this.children.values();
  }

  abstract get(): Rendered;

  reset(): void {
    this.children.clear();
  }
}

export class CounterChild {
  value = 0;
  inc(by = 1): void {
    this.value += by;
  }
}

export class HotCounter extends Family<CounterChild> {
  readonly type = 'counter';

  protected create(): CounterChild {
    return new CounterChild();
  }

  get(): Rendered {
    const values: Sample[] = [];
    for (const { labels, child } of this.children.values()) values.push({ labels, value: child.value });
    return { name: this.name, help: this.help, type: 'counter', values, aggregator: 'sum' };
  }
}

export class HistogramChild {
  /** Per-bucket (not cumulative) counts; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  private readonly bounds: readonly number[];

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > (b[i] as number)) i++;
    this.counts[i]! += 1;
    this.sum += value;
    this.count++;
  }
}

export class HotHistogram extends Family<HistogramChild> {
  readonly type = 'histogram';
  private readonly bounds: readonly number[];

  constructor(
    registry: Registry,
    name: string,
    help: string,
    labelNames: readonly string[],
    bounds: readonly number[],
  ) {
    super(registry, name, help, labelNames);
    this.bounds = bounds;
  }

  protected create(): HistogramChild {
    return new HistogramChild(this.bounds);
  }

  get(): Rendered {
    const values: Sample[] = [];
    for (const { labels, child } of this.children.values()) {
      let cumulative = 0;
      for (let i = 0; i <= this.bounds.length; i++) {
        cumulative += child.counts[i] ?? 0;
        const le = i < this.bounds.length ? (this.bounds[i] as number) : '+Inf';
        values.push({ labels: { ...labels, le }, value: cumulative, metricName: `${this.name}_bucket` });
      }
      values.push({ labels, value: child.sum, metricName: `${this.name}_sum` });
      values.push({ labels, value: child.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: 'histogram', values, aggregator: 'sum' };
  }
}
