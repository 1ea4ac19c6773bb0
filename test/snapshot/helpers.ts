/** Helpers for the snapshot tests: stores, layers from changesets, tree pictures, child processes. */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import ts from 'typescript';
import type { Digest } from '../../src/content/digest.js';
import { ContentStore } from '../../src/content/store.js';
import { makeLayer } from '../../src/layer/make.js';
import { LayerRecords, type LayerRecord } from '../../src/layer/record.js';
import type { Changeset, ChangesetEntry } from '../../src/tar/changeset.js';
import type { EntryHeader } from '../../src/tar/entry.js';
import { walkTree } from '../../src/tar/walk.js';
import type { Compression } from '../../src/image/mediatypes.js';

export const isRoot = process.geteuid?.() === 0;
const REPO = resolve(import.meta.dirname, '..', '..');
const SRC = join(REPO, 'src');

export interface Box {
  dir: string;
  root: string;
  store: ContentStore;
  records: LayerRecords;
  cleanup(): Promise<void>;
}

/** A temp directory with a content store at `dir/store`. */
export async function box(prefix = 'strata-snap-'): Promise<Box> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const root = join(dir, 'store');
  const store = await ContentStore.open(root);
  return {
    dir,
    root,
    store,
    records: new LayerRecords(root),
    cleanup: async () => {
      // Snapshot directories are 0555, which stops a non-root owner from deleting what is inside.
      spawnSync('chmod', ['-R', 'u+rwX', dir], { stdio: 'ignore' });
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const T0 = 1_600_000_000;

/** A directory entry header. */
export function d(path: string, extra: Partial<EntryHeader> = {}): ChangesetEntry {
  return { header: { path, type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: T0, size: 0, ...extra } };
}

/** A regular file entry with `content`. */
export function f(path: string, content: string, extra: Partial<EntryHeader> = {}): ChangesetEntry {
  const data = Buffer.from(content);
  return { header: { path, type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: T0, size: data.length, ...extra }, content: () => data };
}

/** A symlink entry. */
export function l(path: string, target: string, extra: Partial<EntryHeader> = {}): ChangesetEntry {
  return { header: { path, type: 'symlink', linkname: target, mode: 0o777, uid: 0, gid: 0, mtime: T0, size: 0, ...extra } };
}

/** A hardlink entry to `target` (an earlier path of the same layer). */
export function h(path: string, target: string): ChangesetEntry {
  return { header: { path, type: 'hardlink', linkname: target, mode: 0o644, uid: 0, gid: 0, mtime: T0, size: 0 } };
}

/** Makes the layers bottom first, each on top of the previous one; returns their records. */
export async function makeStack(b: Box, changesets: Changeset[], compression: Compression = 'gzip'): Promise<LayerRecord[]> {
  const out: LayerRecord[] = [];
  for (const changeset of changesets) {
    const parent: Digest | undefined = out[out.length - 1]?.chainId;
    out.push(await makeLayer(b.store, { changeset }, { compression, ...(parent ? { parentChainId: parent } : {}) }));
  }
  return out;
}

export function cs(entries: ChangesetEntry[], deletions: string[] = [], opaqueDirs: string[] = []): Changeset {
  return { entries, deletions, opaqueDirs };
}

/**
 * A picture of a tree for comparing two trees: per path, type, permission
 * bits, owner, whole-second mtime, link target, archivable xattrs and a hash of
 * the content. Hardlinks show as such (walkTree's first-path rule).
 */
export async function pictureOf(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const { header, sourcePath } of walkTree(root, { xattrs: true })) {
    const parts: string[] = [header.type, (header.mode & 0o7777).toString(8), `${header.uid}:${header.gid}`];
    // Directory times are compared too: overlay shows the topmost layer's directory, apply the last header's.
    parts.push(`mtime=${Math.floor(header.mtime)}`);
    if (header.linkname !== undefined) parts.push(`-> ${header.linkname}`);
    if (header.type === 'char' || header.type === 'block') parts.push(`dev=${header.devmajor}:${header.devminor}`);
    if (header.type === 'file') parts.push(`size=${header.size}`, `sha=${await hashFile(sourcePath)}`);
    for (const [name, value] of Object.entries(header.xattrs ?? {}).sort()) parts.push(`${name}=${value.toString('base64')}`);
    out[header.path] = parts.join(' ');
  }
  return out;
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex').slice(0, 16);
}

/** Matches a bare specifier-free relative import or export of a TypeScript module. */
const IMPORT_RE = /(?:import|export)\s[^'"]*?from\s+['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g;

/**
 * Transpiles `entries` (paths under src/) and everything they import into
 * `outDir`, for child processes, which cannot load TypeScript. Bare imports
 * (tar-stream) resolve through a node_modules link to the repository's.
 * Readable by every user, so a child may drop privileges.
 */
export async function transpileForChild(entries: string[], outDir: string): Promise<void> {
  await mkdir(outDir, { recursive: true });
  await writeFile(join(outDir, 'package.json'), '{"type":"module"}\n');
  await symlink(join(REPO, 'node_modules'), join(outDir, 'node_modules'));
  const seen = new Set<string>();
  const queue = entries.map((entry) => join(SRC, entry));
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const source = await readFile(file, 'utf8');
    for (const match of source.matchAll(IMPORT_RE)) {
      const spec = match[1] ?? match[2]!;
      queue.push(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
    }
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      fileName: file,
    });
    const target = join(outDir, file.slice(SRC.length + 1).replace(/\.ts$/, '.js'));
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, outputText);
  }
  await chmod(outDir, 0o755);
}

export { startChild, type Child } from '../helpers/child.js';
