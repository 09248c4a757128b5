/** `faultline status|kill|arm|report`: thin clients of a running instance's admin API. */
import { request } from 'undici';
import { reportMarkdown } from '../experiments/report.js';
function opt(args, name) {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
}
function positional(args) {
    for (let i = 0; i < args.length; i++) {
        const a = args[i];
        if (a.startsWith('--')) {
            if (a !== '--json')
                i++;
            continue;
        }
        return a;
    }
    return undefined;
}
export async function adminCall(base, method, path, body) {
    const token = process.env['FAULTLINE_ADMIN_TOKEN'];
    const headers = { 'content-type': 'application/json' };
    if (token)
        headers['authorization'] = `Bearer ${token}`;
    const res = await request(new URL(path, base), {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.body.text();
    let json = text;
    try {
        json = JSON.parse(text);
    }
    catch {
        // plain text answer
    }
    return { status: res.statusCode, json };
}
export async function adminCommand(cmd, args) {
    const base = opt(args, '--admin') ?? process.env['FAULTLINE_ADMIN_URL'] ?? 'http://127.0.0.1:9901';
    const id = positional(args);
    const json = args.includes('--json');
    try {
        let r;
        switch (cmd) {
            case 'status':
                r = await adminCall(base, 'GET', id ? `/experiments/${encodeURIComponent(id)}` : '/experiments');
                break;
            case 'kill': {
                const reason = opt(args, '--reason') ?? 'killed from the CLI';
                const by = `cli:${process.env['USER'] ?? 'operator'}`;
                r = await adminCall(base, 'POST', id ? `/experiments/${encodeURIComponent(id)}/kill` : '/kill', {
                    reason,
                    by,
                });
                break;
            }
            case 'arm':
                if (!id)
                    return usage('faultline arm ID');
                r = await adminCall(base, 'POST', `/experiments/${encodeURIComponent(id)}/arm`, {
                    by: `cli:${process.env['USER'] ?? 'operator'}`,
                });
                break;
            case 'report':
                if (!id)
                    return usage('faultline report ID [--json]');
                r = await adminCall(base, 'GET', `/experiments/${encodeURIComponent(id)}/report`);
                if (r.status === 200 && !json) {
                    process.stdout.write(reportMarkdown(r.json));
                    return 0;
                }
                break;
        }
        if (r.status >= 400) {
            const e = r.json.error;
            process.stderr.write(`faultline ${cmd}: ${r.status} ${e?.message ?? JSON.stringify(r.json)}\n`);
            return 1;
        }
        if (cmd === 'status' && !id && !json)
            process.stdout.write(statusTable(r.json));
        else
            process.stdout.write(JSON.stringify(r.json, null, 2) + '\n');
        return 0;
    }
    catch (err) {
        process.stderr.write(`faultline ${cmd}: cannot reach admin API at ${base}: ${err.message}\n`);
        return 3;
    }
}
function usage(text) {
    process.stderr.write(`usage: ${text}\n`);
    return 3;
}
function statusTable(body) {
    const rows = body.experiments.map((e) => {
        const c = e.arms.canary;
        const k = e.arms.control;
        const rate = (n, d) => (d > 0 ? `${((100 * n) / d).toFixed(1)}%` : '-');
        return [
            e.id,
            e.state,
            `${c.requests} (err ${rate(c.error + c.timeout + c.reset, c.requests)})`,
            `${k.requests} (err ${rate(k.error + k.timeout + k.reset, k.requests)})`,
            e.ended?.reason ?? '',
        ];
    });
    const head = ['EXPERIMENT', 'STATE', 'CANARY', 'CONTROL', 'REASON'];
    const all = [head, ...rows];
    const widths = head.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
    return (all
        .map((r) => r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd())
        .join('\n') + '\n');
}
//# sourceMappingURL=admin-client.js.map