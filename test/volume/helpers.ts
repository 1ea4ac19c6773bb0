/**
 * Helpers for volume tests: trees to compare, and volume-store code runnable in
 * child processes (which cannot load TypeScript). The modules a child needs are
 * found by following relative imports from an entry file and transpiled into a
 * temp directory, so the list never goes stale when a dependency gains imports.
 */
import { spawn } from 'node:child_process';
import { lstat, mkdir, readFile, readdir, readlink, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import ts from 'typescript';

const SRC = join(import.meta.dirname, '..', '..', 'src');

/** Transpiles `entry` (relative to src/) and everything it imports into `outDir`. */
export async function buildChildModules(outDir: string, entry: string): Promise<string> {
  await mkdir(outDir, { recursive: true });
  await writeFile(join(outDir, 'package.json'), '{"type":"module"}\n');
  // Bare imports (tar-stream, ...) resolve through the repository's node_modules.
  await symlink(join(SRC, '..', 'node_modules'), join(outDir, 'node_modules')).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
  const pending = [entry];
  const done = new Set<string>();
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (done.has(file)) continue;
    done.add(file);
    const source = await readFile(join(SRC, file), 'utf8');
    for (const match of source.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)\.js'/g)) {
      pending.push(posix.normalize(posix.join(posix.dirname(file), `${match[1]}.ts`)));
    }
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      fileName: file,
    });
    const target = join(outDir, file.replace(/\.ts$/, '.js'));
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, outputText);
  }
  return outDir;
}

/** Runs `node --input-type=module -e script -- ...args`; resolves with stdout, rejects on failure. */
export function runChild(script: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, '--', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`child exited with ${code}: ${stderr}`))));
  });
}

/** One entry of {@link describeTree}. */
export interface TreeEntry {
  type: 'dir' | 'file' | 'symlink' | 'other';
  /** Permission bits; not for symlinks, whose bits mean nothing on Linux. */
  mode?: number;
  uid: number;
  gid: number;
  mtimeSec?: number;
  content?: string;
  linkTarget?: string;
  /** Paths sharing this entry's inode (hardlinks), this one included; only when more than one. */
  links?: string[];
}

/**
 * Everything about a tree that a copy must preserve, keyed by relative path:
 * type, permission bits, owner, mtime (seconds; not for directories' own
 * timestamps when `dirTimes` is false), content, link targets and hardlink
 * groups.
 */
export async function describeTree(root: string, dirTimes = true): Promise<Record<string, TreeEntry>> {
  const out: Record<string, TreeEntry> = {};
  const inodes = new Map<string, string[]>();
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const path = rel === '' ? name : `${rel}/${name}`;
      const abs = join(root, path);
      const st = await lstat(abs);
      const entry: TreeEntry = {
        type: st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other',
        uid: st.uid,
        gid: st.gid,
      };
      if (!st.isSymbolicLink()) entry.mode = st.mode & 0o7777;
      if (!st.isDirectory() || dirTimes) entry.mtimeSec = Math.floor(st.mtimeMs / 1000);
      if (st.isSymbolicLink()) entry.linkTarget = await readlink(abs);
      if (st.isFile()) {
        entry.content = await readFile(abs, 'utf8');
        if (st.nlink > 1) {
          const key = `${st.dev}:${st.ino}`;
          const group = inodes.get(key) ?? [];
          group.push(path);
          inodes.set(key, group);
          entry.links = group;
        }
      }
      out[path] = entry;
      if (st.isDirectory()) await walk(path);
    }
  };
  await walk('');
  return out;
}
