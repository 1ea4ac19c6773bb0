/**
 * Atomic file replacement: write to a temporary name in the same directory,
 * fsync it, rename over the target, fsync the directory. A reader sees the old
 * file or the new one, never a torn one, and a crash leaves at most a stray
 * temporary file (named `.tmp-*`, which fsck and gc clean up).
 */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink, mkdir } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';

/** Prefix of every temporary file strata creates; nothing else starts with it. */
export const TEMP_PREFIX = '.tmp-';

/** A fresh temporary path beside `target`. */
export function tempPathFor(target: string): string {
  return join(dirname(target), `${TEMP_PREFIX}${basename(target).slice(0, 40)}-${process.pid}-${randomBytes(6).toString('hex')}`);
}

/** fsync a directory so a rename or unlink inside it is durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Atomically replaces `target` with `data` (temp file, fsync, rename, fsync dir). */
export async function writeFileAtomic(target: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  await mkdir(dirname(target), { recursive: true });
  const temp = tempPathFor(target);
  const handle = await open(temp, 'wx', mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => undefined);
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await handle.close();
  try {
    await rename(temp, target);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dirname(target));
}

/** Atomically writes `value` as JSON. */
export async function writeJsonAtomic(target: string, value: unknown): Promise<void> {
  await writeFileAtomic(target, JSON.stringify(value, null, 2) + '\n');
}
