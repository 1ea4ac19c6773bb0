/**
 * Atomic file replacement: write to a temporary name in the same directory,
 * fsync it, rename over the target, fsync the directory. A reader sees the old
 * file or the new one, never a torn one, and a crash leaves at most a stray
 * temporary file (named `.tmp-*`, which fsck and gc clean up).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { open, rename, unlink, mkdir } from 'node:fs/promises';
import { readdirOrEmpty } from './fs.js';
import { processIsAlive } from './process.js';
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

/** Files up to this size are written with synchronous calls (see writeFileAtomic). */
const SMALL_FILE = 64 * 1024;

/**
 * Atomically replaces `target` with `data` (temp file, fsync, rename, fsync
 * dir). Small files (the store's metadata: index.json, records, cache
 * entries) go through synchronous calls: seven thread-pool round trips cost
 * more than the writes, and the two fsyncs block no longer either way.
 */
export async function writeFileAtomic(target: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  if (data.length <= SMALL_FILE) return writeSmallFileAtomic(target, data, mode);
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

function writeSmallFileAtomic(target: string, data: string | Uint8Array, mode: number): void {
  const dir = dirname(target);
  mkdirSync(dir, { recursive: true });
  const temp = tempPathFor(target);
  const fd = openSync(temp, 'wx', mode);
  try {
    writeFileSync(fd, data);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(temp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(temp, target);
  } catch (err) {
    rmSync(temp, { force: true });
    throw err;
  }
  const dirFd = openSync(dir, 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

/** Atomically writes `value` as JSON. */
export async function writeJsonAtomic(target: string, value: unknown): Promise<void> {
  await writeFileAtomic(target, JSON.stringify(value, null, 2) + '\n');
}

/** A temp name from {@link tempPathFor} (or the store's ingest files): `.tmp-…-<pid>-<hex>`. */
const TEMP_PID_RE = /^\.tmp-.*-(\d+)-[a-f0-9]+$/;

/** The pid that created temp file `name`, or undefined when it is not one of ours. */
export function tempFileOwner(name: string): number | undefined {
  const match = TEMP_PID_RE.exec(name);
  return match ? Number(match[1]) : undefined;
}

/**
 * Removes the temp files in `dir` whose creating process has died (the pid is
 * in the name), leaving live writers' files alone. Returns the paths removed.
 */
export async function removeDeadTempFiles(dir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdirOrEmpty(dir)) {
    const pid = tempFileOwner(name);
    if (pid === undefined || processIsAlive(pid)) continue;
    const path = join(dir, name);
    try {
      await unlink(path);
      removed.push(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return removed;
}
