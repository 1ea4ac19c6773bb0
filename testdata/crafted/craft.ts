/**
 * Builds crafted layer tars for the extraction and validation tests, with raw
 * names the project's own writer refuses to produce ('../x', '/abs', ...).
 * Everything is made in memory at test time; nothing binary is checked in.
 */
import { Readable } from 'node:stream';
import tar from 'tar-stream';

/** One raw tar entry. Defaults: regular file, mode 0644 (0755 for directories), uid/gid 0, mtime 2000-01-01. */
export interface CraftEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'fifo' | 'character-device' | 'block-device' | 'contiguous-file';
  linkname?: string;
  content?: string | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch. */
  mtime?: number;
  devmajor?: number;
  devminor?: number;
  /** Extra PAX records, e.g. `{ 'SCHILY.xattr.user.k': 'v' }`. */
  pax?: Record<string, string>;
}

export const DEFAULT_MTIME = 946684800;

/** The whole tar for `entries`, in the given order, as one buffer. */
export async function craftTar(entries: CraftEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  for (const entry of entries) {
    const type = entry.type ?? 'file';
    const content = entry.content === undefined ? Buffer.alloc(0) : Buffer.from(entry.content);
    const header: tar.Headers & { pax?: Record<string, string> } = {
      name: entry.name,
      type,
      mode: entry.mode ?? (type === 'directory' ? 0o755 : 0o644),
      uid: entry.uid ?? 0,
      gid: entry.gid ?? 0,
      mtime: new Date((entry.mtime ?? DEFAULT_MTIME) * 1000),
      size: type === 'file' || type === 'contiguous-file' ? content.length : 0,
    };
    if (entry.linkname !== undefined) header.linkname = entry.linkname;
    if (entry.devmajor !== undefined) header.devmajor = entry.devmajor;
    if (entry.devminor !== undefined) header.devminor = entry.devminor;
    if (entry.pax) header.pax = entry.pax;
    await new Promise<void>((resolve, reject) => {
      pack.entry(header, content, (err) => (err ? reject(err) : resolve()));
    });
  }
  pack.finalize();
  await collected;
  return Buffer.concat(chunks);
}

/** A fresh readable over `bytes` (layers are re-read, so callers pass a factory). */
export function streamOf(bytes: Buffer): Readable {
  return Readable.from([bytes]);
}

/**
 * Rewrites the typeflag of the header block at `offset` (fixing its checksum),
 * for entry types no writer will produce, such as 'S' (GNU sparse) or 'V'
 * (volume label).
 */
export function withTypeflag(bytes: Buffer, offset: number, flag: string): Buffer {
  const out = Buffer.from(bytes);
  out.write(flag, offset + 156, 1, 'latin1');
  out.fill(0x20, offset + 148, offset + 156);
  let sum = 0;
  for (let i = offset; i < offset + 512; i++) sum += out[i]!;
  out.write(`${sum.toString(8).padStart(6, '0')}\0 `, offset + 148, 8, 'latin1');
  return out;
}
