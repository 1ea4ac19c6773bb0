/**
 * Owners a layer gives its files, kept beside a snapshot unpacked without
 * root.
 *
 * Without root a snapshot's files all belong to the user who unpacked it:
 * lchown to the layer's owners is not permitted. What the layer said is then
 * kept in `owners.json` beside the snapshot's `fs` directory, and the merged
 * view reports those owners instead of lstat's. A build that copies up a
 * directory of its base image (COPY into /usr/local/bin, say) so records it
 * with the image's owner (root), as Docker does, not with the unpacking
 * user's (containers-storage keeps the same facts in an xattr,
 * `user.containers.override_stat`; one file per layer costs no extra system
 * call per path, and node has no xattr call).
 *
 * A snapshot unpacked by root has no such file: lstat is the truth there.
 */
import { dirname, join } from 'node:path';
import { StrataError } from '../content/errors.js';
import { writeJsonAtomic } from '../util/atomic.js';
import { readFileOrUndefined } from '../util/fs.js';

/** A layer's owners by path (relative, `/`-separated, as in the layer). */
export type OwnerMap = Map<string, [uid: number, gid: number]>;

/** The file's name, in the snapshot directory (beside `fs`). */
export const OWNERS_FILE = 'owners.json';
const OWNERS_VERSION = 1;
/** Layers whose owners stay parsed in memory. */
const OWNERS_CACHE_LIMIT = 64;

/** Parsed owners by layer directory; undefined where the layer has none. */
const ownersCache = new Map<string, OwnerMap | undefined>();

/** Writes `owners` as the owners file of the snapshot in `snapshotDir`. */
export async function writeLayerOwners(snapshotDir: string, owners: OwnerMap): Promise<void> {
  const record: Record<string, [number, number]> = {};
  for (const [path, owner] of owners) record[path] = owner;
  await writeJsonAtomic(join(snapshotDir, OWNERS_FILE), { version: OWNERS_VERSION, owners: record });
}

/**
 * The owners recorded for layer directory `layerDir` (a snapshot's `fs`),
 * or undefined when there are none (unpacked by root, or not a snapshot).
 * Snapshots do not change once published, so the answer is cached.
 */
export function layerOwners(layerDir: string): OwnerMap | undefined {
  if (ownersCache.has(layerDir)) return ownersCache.get(layerDir);
  const owners = readOwners(join(dirname(layerDir), OWNERS_FILE));
  if (ownersCache.size >= OWNERS_CACHE_LIMIT) ownersCache.delete(ownersCache.keys().next().value!);
  ownersCache.set(layerDir, owners);
  return owners;
}

/** A snapshot whose owners file cannot be read: a wrong owner must not pass silently. */
function damaged(path: string, what: string): StrataError {
  return new StrataError('SNAPSHOT_FAILED', `${path}: ${what}; the snapshot is damaged (remove its directory and it is unpacked again)`);
}

function readOwners(path: string): OwnerMap | undefined {
  const bytes = readFileOrUndefined(path);
  if (bytes === undefined) return undefined;
  let parsed: { version?: unknown; owners?: unknown };
  try {
    parsed = JSON.parse(bytes.toString('utf8')) as typeof parsed;
  } catch {
    throw damaged(path, 'not valid JSON');
  }
  if (parsed.version !== OWNERS_VERSION || typeof parsed.owners !== 'object' || parsed.owners === null) {
    throw damaged(path, `not an owners file of version ${OWNERS_VERSION}`);
  }
  const owners: OwnerMap = new Map();
  for (const [rel, owner] of Object.entries(parsed.owners as Record<string, unknown>)) {
    if (!Array.isArray(owner) || owner.length !== 2 || !owner.every((id) => Number.isSafeInteger(id) && (id as number) >= 0)) {
      throw damaged(path, `the owner of ${JSON.stringify(rel)} is not [uid, gid]`);
    }
    owners.set(rel, [owner[0] as number, owner[1] as number]);
  }
  return owners;
}
