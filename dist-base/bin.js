#!/usr/bin/env -S node --max-semi-space-size=32 --single-threaded-gc
// The V8 flags above are part of the product (bench/PROFILE.md): a larger young generation and GC on
// the main thread, so scavenges of body buffers neither run every few requests nor compete with the
// proxy for its core (x1.6 on 128 KB bodies, 1 KB unchanged). The Dockerfile, `npm start` and bench
// run this file directly or read the flags from this line; `node dist/bin.js` runs without them.
import { main } from './cli.js';
main(process.argv.slice(2)).then((code) => process.exit(code), (err) => {
    process.stderr.write(`faultline: ${err.stack ?? String(err)}\n`);
    process.exit(3);
});
//# sourceMappingURL=bin.js.map