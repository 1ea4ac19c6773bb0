/**
 * `strata cp`: copies files between a container and the host, or streams a
 * tar in or out (`-`), with `docker cp`'s argument rules:
 *
 * - `CONTAINER:PATH` names a container path; an argument starting with `/`
 *   or `.`, or without `:`, is a host path. Exactly one side must be a container.
 * - Out of a container to a host path, the client-side rules of docker's
 *   `archive.CopyTo`: into an existing directory; over an existing file (a
 *   file source only: "cannot copy directory" otherwise); or as a new entry
 *   named after the destination, whose parent must exist ("no such
 *   directory" for a file source to a path ending in `/`). A destination that
 *   is a symlink is followed. Existing directories and non-directories never
 *   replace each other. Owners are not restored (docker's `NoLchown`).
 * - Into a container, see `copyToContainer`.
 *
 * A running container is paused for the copy (its runtime's freezer), as
 * Docker does.
 *
 * Host-side extraction uses the layer extractor's safety (no path leaves the
 * destination, no symlink on the way is followed); a name starting with
 * `.wh.`, which that extractor would read as a deletion, is refused.
 */
import { lstat, readlink, stat } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import type { Command } from 'commander';
import { statContainerPath, type ContainerPathStat } from '../../container/cp.js';
import type { Container } from '../../container/container-store.js';
import type { Strata } from '../../strata.js';
import { WHITEOUT_PREFIX, type EntryHeader } from '../../tar/entry.js';
import { applyLayer } from '../../tar/extract.js';
import { readTar } from '../../tar/read.js';
import { packEntries, type PackSource } from '../../tar/write.js';
import type { CliContext } from '../main.js';
import { openStrata, streamToStdout } from './common.js';

interface CpFlags {
  followLink?: boolean;
  archive?: boolean;
}

/** One side of a copy. */
type CpArg = { container: string; path: string } | { container?: undefined; path: string };

/** docker's splitCpArg. */
export function splitCpArg(arg: string): CpArg {
  if (arg.startsWith('/')) return { path: arg };
  const colon = arg.indexOf(':');
  if (colon < 0 || arg.startsWith('.')) return { path: arg };
  return { container: arg.slice(0, colon), path: arg.slice(colon + 1) };
}

function cleanPath(path: string): string {
  const rooted = path.startsWith('/');
  const out: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
    } else out.push(part);
  }
  const joined = out.join('/');
  return rooted ? `/${joined}` : joined || '.';
}

function specifiesCurrentDir(path: string): boolean {
  return path === '.' || path.endsWith('/.');
}

function assertsDirectory(path: string): boolean {
  return path.endsWith('/') || specifiesCurrentDir(path);
}

/** Go's archive.SplitPathDirEntry: dir and base, keeping a final `.`. */
function splitPathDirEntry(path: string): [string, string] {
  let cleaned = cleanPath(path);
  if (specifiesCurrentDir(path)) cleaned = cleaned === '/' ? '/.' : `${cleaned}/.`;
  const at = cleaned.lastIndexOf('/');
  if (at < 0) return ['.', cleaned];
  return [at === 0 ? '/' : cleaned.slice(0, at), cleaned.slice(at + 1)];
}

/** docker's GetRebaseName: the path to archive for a followed link, and the name its entries keep. */
function rebaseFor(path: string, resolved: string): [string, string | undefined] {
  let target = resolved;
  if (specifiesCurrentDir(path) && !specifiesCurrentDir(target)) target += '/.';
  if (path.endsWith('/') && !target.endsWith('/')) target += '/';
  const base = (p: string): string => splitPathDirEntry(p)[1];
  return [target, base(path) !== base(target) ? base(path) : undefined];
}

interface DestinationInfo {
  path: string;
  exists: boolean;
  isDir: boolean;
}

/** docker's CopyInfoDestinationPath: follows a symlink destination (10 times at most); the parent of a missing one must be a directory. */
async function destinationInfo(raw: string): Promise<DestinationInfo> {
  let path = raw;
  for (let n = 0; ; n++) {
    let info;
    try {
      info = await lstat(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      const [parent] = splitPathDirEntry(path);
      let parentInfo;
      try {
        parentInfo = await stat(parent);
      } catch (statErr) {
        const code = (statErr as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') throw new Error(`stat ${parent}: no such file or directory`);
        if (code === 'ENOTDIR') throw new Error(`stat ${parent}: not a directory`);
        throw statErr;
      }
      if (!parentInfo.isDirectory()) throw new Error('not a directory');
      return { path, exists: false, isDir: false };
    }
    if (!info.isSymbolicLink()) return { path, exists: true, isDir: info.isDirectory() };
    if (n >= 10) throw new Error(`too many symlinks in ${raw}`);
    const target = await readlink(path);
    path = isAbsolute(target) ? target : join(splitPathDirEntry(path)[0], target);
  }
}

/**
 * The container's tar with its top name `from` renamed to `to` (`from` `.`:
 * entries are relative to the directory, which becomes `to`, made with
 * `top`'s attributes), refusing whiteout names and a directory and a
 * non-directory replacing each other at `hostDir`.
 */
async function* rebased(tar: NodeJS.ReadableStream, from: string, to: string | undefined, hostDir: string, top: ContainerPathStat): AsyncGenerator<PackSource> {
  const rename = (path: string): string => {
    if (to === undefined) return path;
    if (from === '.') return `${to}/${path}`;
    return path === from ? to : path.startsWith(`${from}/`) ? to + path.slice(from.length) : path;
  };
  const check = async (header: EntryHeader): Promise<void> => {
    for (const part of header.path.split('/')) {
      if (part.startsWith(WHITEOUT_PREFIX)) throw new Error(`cannot copy ${header.path} to the host: names starting with "${WHITEOUT_PREFIX}" are not supported`);
    }
    let existing;
    try {
      existing = await lstat(join(hostDir, header.path));
    } catch {
      return;
    }
    const target = join(hostDir, header.path);
    if (existing.isDirectory() && header.type !== 'directory') throw new Error(`cannot overwrite directory "${target}" with non-directory "${header.path}"`);
    if (!existing.isDirectory() && header.type === 'directory') throw new Error(`cannot overwrite non-directory "${target}" with directory "${header.path}"`);
  };
  if (from === '.' && to !== undefined) {
    const header: EntryHeader = { path: to, type: 'directory', mode: top.mode & 0o7777, uid: 0, gid: 0, mtime: Math.floor(top.mtime.getTime() / 1000), size: 0 };
    await check(header);
    yield { header };
  }
  for await (const entry of readTar(tar)) {
    const header: EntryHeader = { ...entry.header, path: rename(entry.header.path) };
    if (header.type === 'hardlink' && header.linkname !== undefined) header.linkname = rename(header.linkname);
    await check(header);
    yield { header, content: () => entry.body };
  }
}

/** `docker cp CONTAINER:SRC HOSTDEST`. */
async function copyOut(strata: Strata, container: Container, srcPath: string, dst: string, followLink: boolean): Promise<void> {
  let path = srcPath;
  let info = await statContainerPath(container, path);
  let rebaseName: string | undefined;
  if (followLink && info.isSymbolicLink) {
    [path, rebaseName] = rebaseFor(srcPath, info.linkTarget);
    info = await statContainerPath(container, path);
  }
  const dest = await destinationInfo(dst);
  // The root's archive holds its contents, like a `/.` source.
  const srcBase = cleanPath(path) === '/' ? '.' : splitPathDirEntry(path)[1];
  let hostDir: string;
  let newName: string | undefined;
  if (dest.exists && dest.isDir) {
    hostDir = dest.path;
    newName = rebaseName;
  } else if (dest.exists && info.isDirectory) {
    throw new Error('cannot copy directory');
  } else if (dest.exists) {
    [hostDir, newName] = splitPathDirEntry(dest.path);
  } else if (info.isDirectory) {
    [hostDir, newName] = splitPathDirEntry(dest.path);
  } else if (assertsDirectory(dest.path)) {
    throw new Error('no such directory');
  } else {
    [hostDir, newName] = splitPathDirEntry(dest.path);
  }
  if (newName === srcBase) newName = undefined;
  const tar = await strata.copyFromContainer(container, path);
  await applyLayer(hostDir, packEntries(rebased(tar, srcBase, newName, hostDir, info)), { preserveOwners: false });
}

/** Registers `strata cp [-L] [-a] SRC DEST`. */
export function registerCpCommand(program: Command, ctx: CliContext): void {
  program
    .command('cp')
    .usage('[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n       strata cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH')
    .description('Copy files/folders between a container and the local filesystem')
    .argument('<src>', 'CONTAINER:SRC_PATH, a host path, or - (a tar on STDIN)')
    .argument('<dest>', 'CONTAINER:DEST_PATH, a host path, or - (a tar on STDOUT)')
    .option('-L, --follow-link', 'Always follow symbol link in SRC_PATH')
    .option('-a, --archive', 'Archive mode (copy all uid/gid information)')
    .action(async (srcArg: string, destArg: string, flags: CpFlags) => {
      const src = splitCpArg(srcArg);
      const dest = splitCpArg(destArg);
      if (src.container !== undefined && dest.container !== undefined) throw new Error('copying between containers is not supported');
      if (src.container === undefined && dest.container === undefined) throw new Error('must specify at least one container source');
      const strata = await openStrata(ctx);
      const followLink = flags.followLink === true;
      if (src.container !== undefined) {
        const container = await strata.container(src.container);
        if (dest.path === '-') await streamToStdout(ctx, await strata.copyFromContainer(container, src.path, { followLink }));
        else await copyOut(strata, container, src.path, dest.path, followLink);
        return;
      }
      const source = src.path === '-' ? process.stdin : { hostPath: src.path };
      await strata.copyToContainer(dest.container!, dest.path, source, { followLink, copyUIDGID: flags.archive === true });
    });
}
