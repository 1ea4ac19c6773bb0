/** Fixtures for container tests: a store in a temp dir, images made from directory trees and changesets, tree fingerprints. */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Digest } from '../../src/content/digest.js';
import { newImageConfig, writeImage } from '../../src/image/config.js';
import { ImageStore, type ResolvedImage } from '../../src/image/image-store.js';
import { parseReference } from '../../src/image/reference.js';
import type { ContainerConfig, Descriptor } from '../../src/image/types.js';
import { makeLayer, type LayerSource } from '../../src/layer/make.js';
import { ContainerStore } from '../../src/container/container-store.js';
import { readTreeXattrs } from '../../src/tar/walk.js';

export const execFileAsync = promisify(execFile);

export const isRoot = process.geteuid?.() === 0;

export interface Sandbox {
  dir: string;
  root: string;
  images: ImageStore;
  containers: ContainerStore;
  cleanup: () => Promise<void>;
}

export async function sandbox(): Promise<Sandbox> {
  const dir = await mkdtemp(join(tmpdir(), 'strata-container-'));
  const root = join(dir, 'store');
  const images = await ImageStore.open(root);
  const containers = await ContainerStore.open(root, { images });
  return { dir, root, images, containers, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Makes and tags an image whose layers come from `layers` (bottom first). */
export async function makeImage(
  images: ImageStore,
  ref: string,
  layers: LayerSource[],
  exec: ContainerConfig = {},
  opts: { compression?: 'none' | 'gzip' } = {},
): Promise<ResolvedImage> {
  const content = images.content;
  return content.withLease(async (lease) => {
    let parent: Digest | undefined;
    const descs: Descriptor[] = [];
    const diffIds: Digest[] = [];
    for (const source of layers) {
      // Directory layers keep their xattrs (security.capability and the like).
      const record = await makeLayer(content, source, { ...(parent ? { parentChainId: parent } : {}), ...('dir' in source ? { xattrs: true } : {}), lease, compression: opts.compression ?? 'gzip' });
      parent = record.chainId;
      descs.push({ mediaType: record.mediaType, digest: record.digest, size: record.size });
      diffIds.push(record.diffId);
    }
    const config = newImageConfig({
      config: exec,
      diffIds,
      created: '2024-01-01T00:00:00Z',
      history: layers.map((_, i) => ({ created: '2024-01-01T00:00:00Z', created_by: `layer ${i}` })),
    });
    const written = await writeImage(content, { config, layers: descs, lease });
    return images.addImage(written.manifest, [parseReference(ref)]);
  });
}

/**
 * A fingerprint of a directory tree: every entry's path, type, mode, owner,
 * mtime (ns), size, content hash, link target, device number and xattrs.
 * Anything that changes in the tree changes the fingerprint.
 */
export async function treeFingerprint(root: string): Promise<string> {
  const hash = createHash('sha256');
  const xattrs = (await readTreeXattrs(root, { all: true })) ?? new Map();
  const walk = async (dir: string, rel: string): Promise<void> => {
    const st = await lstat(dir, { bigint: true });
    hash.update(`${rel}|${st.mode}|${st.uid}|${st.gid}|${st.mtimeNs}|${st.size}|${st.rdev}|${JSON.stringify(Object.entries(xattrs.get(rel) ?? {}).map(([k, v]) => [k, (v as Buffer).toString('hex')]))}\n`);
    if (st.isSymbolicLink()) hash.update(await readlink(dir));
    else if (st.isFile()) hash.update(createHash('sha256').update(await readFile(dir)).digest('hex'));
    else if (st.isDirectory()) {
      for (const name of (await readdir(dir)).sort()) await walk(join(dir, name), rel === '' ? name : `${rel}/${name}`);
    }
  };
  await walk(root, '');
  return hash.digest('hex');
}

/** Allocated bytes under `dir` (st_blocks), each inode counted once. */
export async function diskUsage(dir: string): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  const walk = async (path: string): Promise<void> => {
    const st = await lstat(path, { bigint: true });
    const key = `${st.dev}:${st.ino}`;
    if (!seen.has(key)) {
      seen.add(key);
      total += Number(st.blocks) * 512;
    }
    if (st.isDirectory()) for (const name of await readdir(path)) await walk(join(path, name));
  };
  await walk(dir);
  return total;
}

/** Whether overlay mounts work here (root, overlay in the kernel). */
export async function canMountOverlay(): Promise<boolean> {
  if (!isRoot) return false;
  try {
    return /\toverlay$/m.test(await readFile('/proc/filesystems', 'utf8'));
  } catch {
    return false;
  }
}

/** Mounts an overlay of `lowers` (top first) + upper at `target`; returns the unmount function. */
export async function mountOverlay(lowers: string[], upper: string, work: string, target: string): Promise<() => Promise<void>> {
  const { mountOverlay: mount } = await import('../../src/runtime/overlay.js');
  return mount({ lowerDirs: lowers, upperDir: upper, workDir: work, target });
}

export const FIXED_TIME = new Date('2020-01-01T00:00:00Z');
/** security.capability granting cap_net_bind_service=ep (VFS_CAP_REVISION_2). */
export const CAP_NET_BIND = Buffer.from('0100000200040000000000000000000000000000', 'hex');

/**
 * A three-layer image exercising overlay semantics:
 * 1. a tree (owners, setuid, xattrs, hard links, escaping symlinks);
 * 2. a changeset deleting /etc/remove-me and making /opq opaque (with /opq/new);
 * 3. a tree changing /etc/conf.
 */
export async function makeFixtureImage(images: ImageStore, workDir: string, ref = 'fixture:1'): Promise<ResolvedImage> {
  const { mkdir, writeFile, chmod, chown, symlink, link, utimes, lutimes } = await import('node:fs/promises');
  const base = join(workDir, 'layer1');
  const files: Record<string, string | Buffer> = {
    'etc/conf': 'conf v1\n',
    'etc/conf2': 'c2\n',
    'etc/conf3': 'c3\n',
    'etc/remove-me': 'bye\n',
    'etc/remove2': 'bye2\n',
    'etc/big': Buffer.alloc(100_000, 'b'),
    'etc/passwd': 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n',
    'etc/group': 'root:x:0:\napp:x:1000:\n',
    'bin/tool': '#!/bin/sh\necho tool\n',
    'lib/tool': 'lib tool\n',
    'data/one': '1\n',
    'data/sub/two': '2\n',
    'share/doc/readme': 'read me\n',
    'share/hard1': 'hard\n',
    'opq/old': 'old\n',
    'app/app.py': 'print("hello")\n',
  };
  for (const [path, data] of Object.entries(files)) {
    await mkdir(join(base, path, '..'), { recursive: true });
    await writeFile(join(base, path), data);
  }
  await link(join(base, 'share/hard1'), join(base, 'share/hard2'));
  await chown(join(base, 'bin/tool'), 1000, 1000);
  await chmod(join(base, 'bin/tool'), 0o4755);
  await chown(join(base, 'data'), 1000, 1000);
  await chmod(join(base, 'data'), 0o750);
  await symlink('../../../../../../../etc', join(base, 'evil'));
  await symlink('/etc', join(base, 'abs'));
  await symlink('tool', join(base, 'bin/tool-link'));
  await execFileAsync('setfattr', ['-n', 'user.note', '-v', 'hello', join(base, 'bin/tool')]);
  await execFileAsync('setfattr', ['-n', 'security.capability', '-v', `0x${CAP_NET_BIND.toString('hex')}`, join(base, 'bin/tool')]);
  await setTimes(base, FIXED_TIME, utimes, lutimes);

  const top = join(workDir, 'layer3');
  await mkdir(join(top, 'etc'), { recursive: true });
  await writeFile(join(top, 'etc/conf'), 'conf v3\n');
  await setTimes(top, new Date('2021-01-01T00:00:00Z'), utimes, lutimes);

  const t = Date.parse('2020-06-01T00:00:00Z') / 1000;
  return makeImage(
    images,
    ref,
    [
      { dir: base },
      {
        changeset: {
          entries: [
            { header: { path: 'opq', type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: t, size: 0 } },
            { header: { path: 'opq/new', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: t, size: 4 }, content: () => Buffer.from('new\n') },
          ],
          deletions: ['etc/remove-me'],
          opaqueDirs: ['opq'],
        },
      },
      { dir: top },
    ],
    { Cmd: ['/bin/tool'], Env: ['PATH=/bin'], WorkingDir: '/app' },
  );
}

async function setTimes(
  root: string,
  when: Date,
  utimes: (p: string, a: Date, m: Date) => Promise<void>,
  lutimes: (p: string, a: Date, m: Date) => Promise<void>,
): Promise<void> {
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else await lutimes(path, when, when);
    }
    await utimes(dir, when, when);
  };
  await walk(root);
}

/** One line per entry of a tree seen through `ops` (path, type, mode, owner, size, content hash or link target), parents first. */
export async function listing(ops: {
  readdir(path: string): Promise<string[]>;
  lstat(path: string): Promise<import('node:fs').Stats>;
  readFile(path: string): Promise<Buffer>;
  readlink(path: string): Promise<string>;
}): Promise<string[]> {
  const lines: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await ops.readdir(dir)).sort()) {
      const path = dir === '/' ? `/${name}` : `${dir}/${name}`;
      const st = await ops.lstat(path);
      const type = st.isDirectory() ? 'd' : st.isFile() ? 'f' : st.isSymbolicLink() ? 'l' : st.isCharacterDevice() ? 'c' : st.isFIFO() ? 'p' : '?';
      let extra = '';
      if (st.isFile()) extra = createHash('sha256').update(await ops.readFile(path)).digest('hex').slice(0, 16);
      if (st.isSymbolicLink()) extra = await ops.readlink(path);
      lines.push(`${path} ${type} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid} ${st.isDirectory() ? '-' : st.size} ${extra}`);
      if (st.isDirectory()) await walk(path);
    }
  };
  await walk('/');
  return lines;
}

/** {@link listing} of a host directory (a mounted overlay, say). */
export function hostOps(root: string): Parameters<typeof listing>[0] {
  const at = (p: string): string => join(root, p);
  return {
    readdir: (p) => readdir(at(p)),
    lstat: (p) => lstat(at(p)),
    readFile: (p) => readFile(at(p)),
    readlink: (p) => readlink(at(p)),
  };
}
