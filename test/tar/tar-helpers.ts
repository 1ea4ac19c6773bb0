/** Helpers shared by the tar writer/reader/walker tests. */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { EntryHeader } from '../../src/tar/entry.js';
import { readTar } from '../../src/tar/read.js';

export const isRoot = process.getuid?.() === 0;

export function hasCommand(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

export async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks);
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export interface ReadEntry {
  header: EntryHeader;
  rawName: string;
  content: Buffer;
}

/** Reads a whole (small) tar held in memory. */
export async function readAll(tar: Buffer | NodeJS.ReadableStream): Promise<ReadEntry[]> {
  const source = Buffer.isBuffer(tar) ? Readable.from([tar]) : tar;
  const out: ReadEntry[] = [];
  for await (const { header, rawName, body } of readTar(source)) {
    out.push({ header, rawName, content: await collect(body) });
  }
  return out;
}

export async function tempDir(prefix = 'strata-tar-'): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

export function run(command: string, args: string[], opts: { cwd?: string; input?: Buffer } = {}): Buffer {
  return execFileSync(command, args, { cwd: opts.cwd, input: opts.input, stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
}

/** A header block field set for hand-crafted (possibly invalid) archives. */
export interface RawEntry {
  name: string;
  typeflag?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  mtime?: number;
  linkname?: string;
  magic?: 'ustar' | 'gnu' | 'v7';
  body?: Buffer;
}

/** Hand-crafts tar blocks, for inputs our own writer refuses to produce. */
export function rawTar(entries: RawEntry[], opts: { end?: boolean } = {}): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const body = entry.body ?? Buffer.alloc(0);
    const block = Buffer.alloc(512);
    block.write(entry.name, 0, 100, 'utf8');
    block.write(`${(entry.mode ?? 0o644).toString(8).padStart(7, '0')}\0`, 100, 'latin1');
    block.write(`${(entry.uid ?? 0).toString(8).padStart(7, '0')}\0`, 108, 'latin1');
    block.write(`${(entry.gid ?? 0).toString(8).padStart(7, '0')}\0`, 116, 'latin1');
    block.write(`${(entry.size ?? body.length).toString(8).padStart(11, '0')}\0`, 124, 'latin1');
    block.write(`${(entry.mtime ?? 0).toString(8).padStart(11, '0')}\0`, 136, 'latin1');
    block.write(entry.typeflag ?? '0', 156, 'latin1');
    if (entry.linkname) block.write(entry.linkname, 157, 100, 'utf8');
    const magic = entry.magic ?? 'ustar';
    if (magic === 'ustar') block.write('ustar\x0000', 257, 'latin1');
    if (magic === 'gnu') block.write('ustar  \0', 257, 'latin1');
    block.fill(0x20, 148, 156);
    let sum = 0;
    for (const byte of block) sum += byte;
    block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    blocks.push(block, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  if (opts.end !== false) blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** PAX records ("LEN key=value\n") with binary-safe values. */
export function paxBody(records: Array<[string, string | Buffer]>): Buffer {
  return Buffer.concat(
    records.map(([key, value]) => {
      const bytes = typeof value === 'string' ? Buffer.from(value) : value;
      const rest = Buffer.byteLength(key) + bytes.length + 3;
      let length = rest + String(rest).length;
      if (String(length).length !== String(rest).length) length = rest + String(length).length;
      return Buffer.concat([Buffer.from(`${length} ${key}=`), bytes, Buffer.from('\n')]);
    }),
  );
}
