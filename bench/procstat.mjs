// CPU time and peak memory of a process and its descendants, from /proc (Linux only).
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

let clkTck = 100;
try {
  clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {
  // 100 is the value on every Linux this bench targets.
}

/** Parses a /proc/<pid>/stat line; the comm field may contain spaces and parentheses. */
export function parseStat(text) {
  const close = text.lastIndexOf(')');
  const fields = text.slice(close + 2).split(' ');
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15 (1-based).
  return { utimeTicks: Number(fields[11]), stimeTicks: Number(fields[12]) };
}

export function descendants(pid) {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      const tasks = readFileSync(`/proc/${out[i]}/task/${out[i]}/children`, 'utf8').trim();
      if (tasks) out.push(...tasks.split(/\s+/).map(Number));
    } catch {
      // gone or not ours to read
    }
  }
  return out;
}

/** CPU microseconds (user + system) used so far by pid and its children that are still alive. */
export function cpuMicros(pid) {
  let ticks = 0;
  for (const p of descendants(pid)) {
    try {
      const s = parseStat(readFileSync(`/proc/${p}/stat`, 'utf8'));
      ticks += s.utimeTicks + s.stimeTicks;
    } catch {
      // exited between listing and reading
    }
  }
  return (ticks * 1e6) / clkTck;
}

export function parseStatusKb(text, key) {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

/** Peak resident set (VmHWM), summed over the process tree, in kB. */
export function peakRssKb(pid) {
  let kb = 0;
  for (const p of descendants(pid)) {
    try {
      kb += parseStatusKb(readFileSync(`/proc/${p}/status`, 'utf8'), 'VmHWM') ?? 0;
    } catch {
      // exited
    }
  }
  return kb;
}

/** Busy ticks of the whole machine (every CPU), from the first line of /proc/stat. */
export function systemBusyTicks() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal ...: everything but idle and iowait
  return f.reduce((a, b) => a + b, 0) - (f[3] ?? 0) - (f[4] ?? 0);
}

/**
 * Ticks used by this process tree: live descendants plus the children already reaped (cutime and
 * cstime of this process), so short-lived wrk / load generator processes are included.
 */
export function ownTreeTicks() {
  let ticks = 0;
  for (const p of descendants(process.pid)) {
    try {
      const text = readFileSync(`/proc/${p}/stat`, 'utf8');
      const s = parseStat(text);
      ticks += s.utimeTicks + s.stimeTicks;
      if (p === process.pid) {
        const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
        ticks += Number(fields[13]) + Number(fields[14]);
      }
    } catch {
      // exited
    }
  }
  return ticks;
}

/** Starts a window; the returned function gives the share (%) of all CPUs used by other processes. */
export function foreignCpuWindow(nproc) {
  const sys0 = systemBusyTicks();
  const own0 = ownTreeTicks();
  const t0 = performance.now();
  return () => {
    const elapsedTicks = ((performance.now() - t0) / 1000) * clkTck * nproc;
    const foreign = systemBusyTicks() - sys0 - (ownTreeTicks() - own0);
    return elapsedTicks > 0 ? Math.max(0, (100 * foreign) / elapsedTicks) : 0;
  };
}
