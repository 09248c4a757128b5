/**
 * A raw HTTP/2 client over a plain TCP socket: writes frames byte by byte (preface, SETTINGS, HEADERS
 * without END_STREAM, ...) the way an attacker would, with no client library smoothing anything, and
 * parses what the server sends back (SETTINGS, RST_STREAM, GOAWAY).
 */
import net from 'node:net';

export const FRAME_DATA = 0x0;
export const FRAME_HEADERS = 0x1;
export const FRAME_RST_STREAM = 0x3;
export const FRAME_SETTINGS = 0x4;
export const FRAME_GOAWAY = 0x7;
export const FLAG_END_STREAM = 0x1;
export const FLAG_ACK = 0x1;
export const FLAG_END_HEADERS = 0x4;
export const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
export const ERR_PROTOCOL = 0x1;
export const ERR_REFUSED_STREAM = 0x7;
export const ERR_CANCEL = 0x8;
export const ERR_ENHANCE_YOUR_CALM = 0xb;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)) {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** HPACK integer with an n-bit prefix (RFC 7541 §5.1). */
function hpackInt(value: number, prefixBits: number, firstByte: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByte | value]);
  const out = [firstByte | max];
  value -= max;
  while (value >= 128) {
    out.push((value % 128) + 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return Buffer.from(out);
}

/** A header block of "literal without indexing, new name" fields (no Huffman, no dynamic table). */
export function headerBlock(fields: readonly [string, string][]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of fields) {
    parts.push(Buffer.from([0x00]));
    parts.push(hpackInt(name.length, 7, 0), Buffer.from(name, 'latin1'));
    parts.push(hpackInt(value.length, 7, 0), Buffer.from(value, 'latin1'));
  }
  return Buffer.concat(parts);
}

export class RawH2 {
  readonly socket: net.Socket;
  readonly frames: Frame[] = [];
  private buf = Buffer.alloc(0);
  private waiters: { pred: (f: Frame) => boolean; resolve: (f: Frame) => void }[] = [];
  closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', () => undefined);
    socket.on('close', () => (this.closed = true));
  }

  /** Connects and sends the preface and an empty SETTINGS frame. */
  static async connect(port: number): Promise<RawH2> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const c = new RawH2(socket);
    socket.write(Buffer.concat([PREFACE, frame(FRAME_SETTINGS, 0, 0)]));
    return c;
  }

  private onData(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    while (this.buf.length >= 9) {
      const len = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + len) break;
      const f: Frame = {
        type: this.buf[3] as number,
        flags: this.buf[4] as number,
        streamId: this.buf.readUInt32BE(5) & 0x7fffffff,
        payload: this.buf.subarray(9, 9 + len),
      };
      this.buf = this.buf.subarray(9 + len);
      this.frames.push(f);
      for (const w of [...this.waiters])
        if (w.pred(f)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(f);
        }
    }
  }

  waitFor(pred: (f: Frame) => boolean, timeoutMs = 5000): Promise<Frame> {
    const hit = this.frames.find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('frame not received in time')), timeoutMs);
      this.waiters.push({
        pred,
        resolve: (f) => {
          clearTimeout(t);
          resolve(f);
        },
      });
    });
  }

  /** The server's first (non-ACK) SETTINGS, as id -> value; ACKs it unless `ack` is false. */
  async serverSettings(ack = true): Promise<Map<number, number>> {
    const f = await this.waitFor((x) => x.type === FRAME_SETTINGS && (x.flags & FLAG_ACK) === 0);
    const out = new Map<number, number>();
    for (let i = 0; i + 6 <= f.payload.length; i += 6)
      out.set(f.payload.readUInt16BE(i), f.payload.readUInt32BE(i + 2));
    if (ack) this.socket.write(frame(FRAME_SETTINGS, FLAG_ACK, 0));
    return out;
  }

  /** A DATA frame on a stream (END_STREAM only when `end`). */
  data(streamId: number, payload: Buffer, end: boolean): void {
    this.socket.write(frame(FRAME_DATA, end ? FLAG_END_STREAM : 0, streamId, payload));
  }

  /** Opens a request stream: HEADERS with END_HEADERS, and END_STREAM only when `end`. */
  headers(streamId: number, fields: readonly [string, string][], end: boolean): void {
    this.socket.write(
      frame(FRAME_HEADERS, FLAG_END_HEADERS | (end ? FLAG_END_STREAM : 0), streamId, headerBlock(fields)),
    );
  }

  /** RST_STREAM codes received, by stream id. */
  resets(): Map<number, number> {
    const out = new Map<number, number>();
    for (const f of this.frames)
      if (f.type === FRAME_RST_STREAM) out.set(f.streamId, f.payload.readUInt32BE(0));
    return out;
  }

  destroy(): void {
    this.socket.destroy();
  }
}
