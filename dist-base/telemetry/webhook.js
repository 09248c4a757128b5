/**
 * Kill-switch notifications to a webhook: POST JSON per event, retried with backoff, delivered from a
 * bounded queue off the request path. A slow or dead receiver never delays a kill.
 */
import { request } from 'undici';
import { log } from './log.js';
const MAX_QUEUE = 1000;
const ATTEMPTS = 5;
const FIRST_BACKOFF_MS = 200;
export class WebhookNotifier {
    url;
    timeoutMs;
    queue = [];
    sending = null;
    stopped = false;
    delivered = 0;
    failed = 0;
    constructor(url, timeoutMs) {
        this.url = url;
        this.timeoutMs = timeoutMs;
    }
    /** Events worth waking someone for: kills and ends of experiments. */
    notify(e) {
        if (this.stopped || (e.type !== 'killed' && e.type !== 'expired'))
            return;
        if (this.queue.length >= MAX_QUEUE) {
            this.queue.shift();
            this.failed++;
            log('warn', 'webhook queue full; dropped the oldest event', { url: this.url });
        }
        this.queue.push(e);
        this.sending ??= this.drain();
    }
    async drain() {
        while (this.queue.length > 0 && !this.stopped) {
            const e = this.queue[0];
            if (await this.deliver(e))
                this.delivered++;
            else
                this.failed++;
            this.queue.shift();
        }
        this.sending = null;
    }
    async deliver(e) {
        const body = JSON.stringify({ source: 'faultline', ...e });
        let backoff = FIRST_BACKOFF_MS;
        for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
            try {
                const res = await request(this.url, {
                    method: 'POST',
                    headers: { 'content-type': 'application/json' },
                    body,
                    headersTimeout: this.timeoutMs,
                    bodyTimeout: this.timeoutMs,
                });
                await res.body.dump();
                if (res.statusCode < 300)
                    return true;
                if (res.statusCode < 500 && res.statusCode !== 429) {
                    log('warn', 'webhook rejected event; not retrying', { url: this.url, status: res.statusCode });
                    return false;
                }
            }
            catch (err) {
                if (attempt === ATTEMPTS)
                    log('warn', 'webhook delivery failed', { url: this.url, error: err.message });
            }
            if (this.stopped)
                return false;
            await new Promise((r) => setTimeout(r, backoff).unref());
            backoff *= 2;
        }
        return false;
    }
    /** Stop; events still queued (with their retries) get up to `graceMs` to be delivered first. */
    async stop(graceMs = 0) {
        const pending = this.sending;
        if (pending !== null && graceMs > 0) {
            let timer;
            await Promise.race([pending, new Promise((r) => (timer = setTimeout(r, graceMs)))]);
            clearTimeout(timer);
        }
        this.stopped = true;
    }
}
//# sourceMappingURL=webhook.js.map