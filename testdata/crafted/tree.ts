/**
 * Test helper: a plain-object picture of a directory tree (lstat only, never
 * following symlinks), for comparing trees before and after an operation.
 */
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';

export interface NodeSnapshot {
  type: 'file' | 'directory' | 'symlink' | 'fifo' | 'char' | 'block' | 'other';
  mode: number;
  uid: number;
  gid: number;
  /** Whole seconds. */
  mtime: number;
  content?: string;
  linkname?: string;
  ino: number;
  rdev?: number;
}

/** Every path under `root` (relative, '/'-separated, root itself excluded) with its lstat picture. */
export async function snapshotTree(root: string): Promise<Record<string, NodeSnapshot>> {
  const out: Record<string, NodeSnapshot> = {};
  async function walk(dir: string, prefix: string): Promise<void> {
    for (const name of (await readdir(dir)).sort()) {
      const abs = join(dir, name);
      const rel = prefix === '' ? name : `${prefix}/${name}`;
      const st = await lstat(abs);
      const node: NodeSnapshot = {
        type: st.isFile()
          ? 'file'
          : st.isDirectory()
            ? 'directory'
            : st.isSymbolicLink()
              ? 'symlink'
              : st.isFIFO()
                ? 'fifo'
                : st.isCharacterDevice()
                  ? 'char'
                  : st.isBlockDevice()
                    ? 'block'
                    : 'other',
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
        mtime: Math.floor(st.mtimeMs / 1000),
        ino: st.ino,
      };
      if (node.type === 'file') node.content = (await readFile(abs)).toString('utf8');
      if (node.type === 'symlink') node.linkname = await readlink(abs);
      if (node.type === 'char' || node.type === 'block') node.rdev = st.rdev;
      out[rel] = node;
      if (node.type === 'directory') await walk(abs, rel);
    }
  }
  await walk(root, '');
  return out;
}

/** The snapshot without inode numbers and times, for comparing trees built separately. */
export function shapeOf(snapshot: Record<string, NodeSnapshot>): Record<string, Omit<NodeSnapshot, 'ino' | 'mtime'>> {
  const out: Record<string, Omit<NodeSnapshot, 'ino' | 'mtime'>> = {};
  for (const [path, { ino: _ino, mtime: _mtime, ...rest }] of Object.entries(snapshot)) out[path] = rest;
  return out;
}
