class Family {
    name;
    help;
    labelNames;
    children = new Map();
    constructor(registry, name, help, labelNames) {
        this.name = name;
        this.help = help;
        this.labelNames = labelNames;
        registry.registerMetric(this);
    }
    /** The child for these label values (in labelNames order), created on first use. */
    labels(...values) {
        const key = values.join('\u0000');
        let entry = this.children.get(key);
        if (entry === undefined) {
            if (values.length !== this.labelNames.length)
                throw new Error(`${this.name}: expected ${this.labelNames.length} label values, got ${values.length}`);
            const labels = {};
            this.labelNames.forEach((n, i) => (labels[n] = values[i]));
            entry = { labels, child: this.create() };
            this.children.set(key, entry);
        }
        return entry.child;
    }
    /** Drops every child whose labels include these (e.g. a removed experiment). */
    remove(match) {
        for (const [key, e] of this.children)
            if (Object.entries(match).every(([k, v]) => e.labels[k] === v))
                this.children.delete(key);
    }
    reset() {
        this.children.clear();
    }
}
export class CounterChild {
    value = 0;
    inc(by = 1) {
        this.value += by;
    }
}
export class HotCounter extends Family {
    type = 'counter';
    create() {
        return new CounterChild();
    }
    get() {
        const values = [];
        for (const { labels, child } of this.children.values())
            values.push({ labels, value: child.value });
        return { name: this.name, help: this.help, type: 'counter', values, aggregator: 'sum' };
    }
}
export class HistogramChild {
    /** Per-bucket (not cumulative) counts; the last slot is +Inf. */
    counts;
    sum = 0;
    count = 0;
    bounds;
    constructor(bounds) {
        this.bounds = bounds;
        this.counts = new Float64Array(bounds.length + 1);
    }
    observe(value) {
        const b = this.bounds;
        let i = 0;
        while (i < b.length && value > b[i])
            i++;
        this.counts[i] += 1;
        this.sum += value;
        this.count++;
    }
}
export class HotHistogram extends Family {
    type = 'histogram';
    bounds;
    constructor(registry, name, help, labelNames, bounds) {
        super(registry, name, help, labelNames);
        this.bounds = bounds;
    }
    create() {
        return new HistogramChild(this.bounds);
    }
    get() {
        const values = [];
        for (const { labels, child } of this.children.values()) {
            let cumulative = 0;
            for (let i = 0; i <= this.bounds.length; i++) {
                cumulative += child.counts[i] ?? 0;
                const le = i < this.bounds.length ? this.bounds[i] : '+Inf';
                values.push({ labels: { ...labels, le }, value: cumulative, metricName: `${this.name}_bucket` });
            }
            values.push({ labels, value: child.sum, metricName: `${this.name}_sum` });
            values.push({ labels, value: child.count, metricName: `${this.name}_count` });
        }
        return { name: this.name, help: this.help, type: 'histogram', values, aggregator: 'sum' };
    }
}
//# sourceMappingURL=hot-metrics.js.map