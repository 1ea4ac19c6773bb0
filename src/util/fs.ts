/**
 * File-system calls for code that treats a missing path as an answer rather
 * than a failure (overlay lookups, directory scans of optional dirs).
 */
import type { Stats } from 'node:fs';
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

/** The names in directory `dir`, or none when the directory does not exist. */
export async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return [];
    throw err;
  }
}
