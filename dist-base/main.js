/**
 * A running Faultline: listeners, admin server, experiment table, upstream pools, and config reloads
 * (validate and compile first, then swap atomically; an invalid file leaves the running config in force).
 */
import { watch } from 'node:fs';
import { isIP } from 'node:net';
import { basename, dirname } from 'node:path';
import { AdminServer } from './admin/server.js';
import { compileListenerPlans, listenerBindingKey } from './config/compile.js';
import { loadConfigFile } from './config/load.js';
import { configWarnings } from './config/warnings.js';
import { ConfigError, FaultlineError } from './errors.js';
import { ExperimentTable } from './experiments/table.js';
import { StateStore } from './killswitch/store.js';
import { Listener } from './proxy/listener.js';
import { UpstreamPools } from './proxy/upstreams.js';
import { log } from './telemetry/log.js';
import { createMetrics } from './telemetry/metrics.js';
import { WebhookNotifier } from './telemetry/webhook.js';
export class Faultline {
    metrics;
    table;
    listeners = new Map();
    pools = new UpstreamPools();
    admin = null;
    config;
    configFile;
    status;
    ready = false;
    watcher = null;
    webhook = null;
    startedAtMs = Date.now();
    globalDeadline = null;
    globalDeadlinePassed = false;
    reloadChain = Promise.resolve();
    adminPort = 0;
    constructor(configFile, config) {
        this.configFile = configFile;
        this.config = config;
        this.metrics = createMetrics();
        this.table = new ExperimentTable(new StateStore(config.state_dir), this.metrics);
        const now = new Date().toISOString();
        this.status = { file: configFile, status: 'ok', loaded_at: now, last_attempt_at: now, error: null };
    }
    static async start(opts) {
        const config = opts.config ?? (await loadConfigFile(opts.configFile));
        const fl = new Faultline(opts.configFile, config);
        try {
            await fl.boot();
        }
        catch (err) {
            await fl.stop(0);
            throw err;
        }
        if (opts.watch)
            fl.watchFile();
        return fl;
    }
    async boot() {
        const cfg = this.config;
        const token = cfg.admin.token ?? process.env['FAULTLINE_ADMIN_TOKEN'];
        if (!isLoopback(cfg.admin.address) && !token)
            throw new FaultlineError('FL_ADMIN_UNGUARDED', `admin.address: ${cfg.admin.address} is not loopback; set admin.token or FAULTLINE_ADMIN_TOKEN to expose the admin port`);
        await this.table.init();
        if (cfg.webhook) {
            const hook = new WebhookNotifier(cfg.webhook.url, cfg.webhook.timeout_ms);
            this.webhook = hook;
            this.table.on('event', (e) => hook.notify(e));
        }
        const experiments = this.table.prepare(cfg.experiments);
        const plans = compileListenerPlans(cfg, this.pools, this.metrics, experiments);
        this.table.activate(experiments);
        this.admin = new AdminServer(this, token);
        this.adminPort = (await this.admin.listen(cfg.admin.port, cfg.admin.address)).port;
        for (const spec of cfg.listeners) {
            const listener = new Listener(spec, plans.get(spec.name), this.metrics, this.table);
            this.listeners.set(spec.name, listener);
            const addr = await listener.listen();
            log('info', 'listener started', {
                listener: spec.name,
                address: addr.address,
                port: addr.port,
                protocol: spec.protocol,
            });
        }
        this.metrics.configValid.set(1);
        this.startGlobalDeadline(cfg.max_duration);
        logWarnings(cfg);
        this.ready = true;
        log('info', 'faultline started', {
            config: this.configFile,
            admin: `${cfg.admin.address}:${this.adminPort}`,
            experiments: cfg.experiments.map((e) => e.id),
        });
    }
    isReady() {
        return this.ready;
    }
    configStatus() {
        return this.status;
    }
    port(listener) {
        const l = this.listeners.get(listener);
        if (!l)
            throw new Error(`no listener ${listener}`);
        return l.address().port;
    }
    /** Re-read and apply the config file. Serialised; never leaves a half-applied config. */
    reload() {
        const next = this.reloadChain.then(() => this.reloadNow());
        this.reloadChain = next.catch(() => undefined);
        return next;
    }
    async reloadNow() {
        const attempt = new Date().toISOString();
        try {
            const cfg = await loadConfigFile(this.configFile);
            this.checkBindings(cfg);
            const experiments = this.table.prepare(cfg.experiments);
            const plans = compileListenerPlans(cfg, this.pools, this.metrics, experiments);
            // Swap: plans first (requests read them), then the experiment set.
            for (const spec of cfg.listeners)
                this.listeners.get(spec.name)?.swapPlan(plans.get(spec.name), spec);
            this.table.activate(experiments);
            this.config = cfg;
            const keep = new Set([...plans.values()].flatMap((p) => p.routes.map((r) => r.pool)));
            void this.pools.retain(keep, () => this.table.heldPools());
            this.status = {
                file: this.configFile,
                status: 'ok',
                loaded_at: attempt,
                last_attempt_at: attempt,
                error: null,
            };
            this.metrics.configReloads.inc({ result: 'success' });
            this.metrics.configValid.set(1);
            this.table.recordConfigEvent('config_reloaded');
            log('info', 'config reloaded', {
                config: this.configFile,
                experiments: cfg.experiments.map((e) => e.id),
            });
            this.startGlobalDeadline(cfg.max_duration);
            logWarnings(cfg);
        }
        catch (err) {
            const issues = err instanceof ConfigError ? err.issues : [{ path: '', reason: err.message }];
            this.status = {
                ...this.status,
                status: 'invalid',
                last_attempt_at: attempt,
                error: { message: err.message, issues },
            };
            this.metrics.configReloads.inc({ result: 'invalid' });
            this.metrics.configValid.set(0);
            this.table.recordConfigEvent('config_invalid', err.message);
            log('error', 'config reload rejected; running config stays in force', {
                config: this.configFile,
                issues,
            });
        }
        return this.status;
    }
    /** Listeners are bound sockets: a reload may change routes and experiments, not bindings. */
    checkBindings(cfg) {
        const issues = [];
        const before = new Map(this.config.listeners.map((l) => [l.name, listenerBindingKey(l)]));
        cfg.listeners.forEach((l, i) => {
            const key = before.get(l.name);
            if (key === undefined)
                issues.push({ path: `listeners[${i}]`, reason: `new listener "${l.name}" needs a restart` });
            else if (key !== listenerBindingKey(l))
                issues.push({
                    path: `listeners[${i}]`,
                    reason: `changing address, port, protocol or tls of "${l.name}" needs a restart`,
                });
            before.delete(l.name);
        });
        for (const name of before.keys())
            issues.push({ path: 'listeners', reason: `removing listener "${name}" needs a restart` });
        if (cfg.state_dir !== this.config.state_dir)
            issues.push({ path: 'state_dir', reason: 'changing it needs a restart' });
        if (JSON.stringify(cfg.admin) !== JSON.stringify(this.config.admin))
            issues.push({ path: 'admin', reason: 'changing the admin listener needs a restart' });
        if (issues.length > 0)
            throw new ConfigError(this.configFile, issues);
    }
    /**
     * Watches the config's directory, not the file: editors and ConfigMap updates replace the file
     * (rename over it), which would silently end a watch on the old inode.
     */
    watchFile() {
        let timer = null;
        const name = basename(this.configFile);
        try {
            this.watcher = watch(dirname(this.configFile), (_event, changed) => {
                if (changed !== null && changed !== name && !String(changed).startsWith('..data'))
                    return;
                if (timer)
                    clearTimeout(timer);
                // Writers often write in several steps; wait for the file to settle.
                timer = setTimeout(() => void this.reload(), 200);
            });
            this.watcher.on('error', () => undefined);
        }
        catch (err) {
            log('warn', 'cannot watch config file; reload with SIGHUP or POST /config/reload', {
                error: err.message,
            });
        }
    }
    /**
     * The global `max_duration` guard: that long after this process started, every running experiment is
     * killed at once (once; experiments armed afterwards run until stopped). A reload may move it.
     */
    startGlobalDeadline(maxMs) {
        if (this.globalDeadline !== null)
            clearTimeout(this.globalDeadline);
        this.globalDeadline = null;
        if (maxMs === undefined || this.globalDeadlinePassed)
            return;
        const fire = () => {
            this.globalDeadline = null;
            this.globalDeadlinePassed = true;
            const killed = this.table.killAll('duration', `global max_duration of ${maxMs} ms elapsed`, 'guard:max_duration');
            log('warn', 'global max_duration elapsed', { killed });
        };
        const left = this.startedAtMs + maxMs - Date.now();
        if (left <= 0)
            fire();
        else
            this.globalDeadline = setTimeout(fire, left).unref();
    }
    /** Stop accepting, drain in-flight requests up to the deadline, close everything. */
    async stop(drainMs = this.config.drain_timeout_ms) {
        this.ready = false;
        this.watcher?.close();
        log('info', 'faultline stopping', { drain_timeout_ms: drainMs });
        // Held faults are let go first (forwarded or answered), so they do not hold the drain open.
        this.table.stop();
        await Promise.all([...this.listeners.values()].map((l) => l.drain(drainMs)));
        if (this.globalDeadline !== null)
            clearTimeout(this.globalDeadline);
        // Notifications of the last kills (a CI run that ends on one) get a bounded chance to go out.
        await this.webhook?.stop(2000);
        await this.table.flush();
        await this.admin?.close();
        await this.pools.destroyAll();
        log('info', 'faultline stopped');
    }
}
function logWarnings(cfg) {
    for (const w of configWarnings(cfg))
        log('warn', 'config warning', { path: w.path, reason: w.reason });
}
function isLoopback(address) {
    if (isIP(address) === 4)
        return address.startsWith('127.');
    return address === '::1';
}
//# sourceMappingURL=main.js.map