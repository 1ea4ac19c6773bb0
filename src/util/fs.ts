/**
 * File-system calls for code that treats a missing path as an answer rather
 * than a failure (overlay lookups, directory scans of optional dirs).
 */
import { lstatSync, readFileSync, type Stats } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';

/** The errno name (`ENOENT`, `ENOTDIR`, …) of a failed Node call, or undefined. */
export function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

/** lstat of `path`, or undefined when it (or a directory on the way) does not exist. */
export async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/**
 * lstat of `path` with a synchronous call (for hot paths, where a thread-pool
 * round trip costs more than the call), or undefined when it (or a directory
 * on the way) does not exist.
 */
export function lstatSyncOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path, { throwIfNoEntry: false });
  } catch (err) {
    if (errnoOf(err) === 'ENOTDIR') return undefined;
    throw err;
  }
}

/**
 * The whole of a small file (metadata: records, cache entries, index.json),
 * read with one synchronous call, or undefined when it does not exist.
 */
export function readFileOrUndefined(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/** The names in directory `dir`, or none when the directory does not exist. */
export async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return [];
    throw err;
  }
}
