/**
 * Persisted experiment states (killed, expired): written to a temp file, fsynced, renamed over the
 * old one (atomic on POSIX), so a crash mid-write leaves the previous state, never a torn file.
 * Writes are serialised; the hot path never waits for them.
 */
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { log } from '../telemetry/log.js';
export class StateStore {
    file;
    dir;
    chain = Promise.resolve();
    constructor(dir) {
        this.dir = dir;
        this.file = join(dir, 'experiments.json');
    }
    async load() {
        try {
            const parsed = JSON.parse(await readFile(this.file, 'utf8'));
            if (parsed.version === 1 && typeof parsed.experiments === 'object' && parsed.experiments !== null)
                return parsed;
            throw new Error('unknown format');
        }
        catch (err) {
            if (err.code === 'ENOENT')
                return { version: 1, experiments: {} };
            // Refusing to start is safer than silently resuming experiments that were killed.
            throw new Error(`cannot read kill-switch state ${this.file}: ${err.message}`);
        }
    }
    /** Queue a write of `state`; resolves once it is durable. */
    save(state) {
        const text = JSON.stringify(state, null, 2) + '\n';
        const next = this.chain.then(() => this.write(text));
        this.chain = next.catch((err) => {
            log('error', 'kill-switch state write failed', { file: this.file, error: err.message });
        });
        return next;
    }
    async write(text) {
        await mkdir(this.dir, { recursive: true });
        const tmp = `${this.file}.${process.pid}.tmp`;
        const fh = await open(tmp, 'w', 0o600);
        try {
            await fh.writeFile(text);
            await fh.sync();
        }
        finally {
            await fh.close();
        }
        await rename(tmp, this.file);
        // fsync the directory so the rename itself survives a power cut.
        const dh = await open(this.dir, 'r');
        try {
            await dh.sync();
        }
        finally {
            await dh.close();
        }
    }
    async flush() {
        await this.chain;
    }
}
//# sourceMappingURL=store.js.map