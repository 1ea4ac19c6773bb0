/** Shared fixtures for layer tests: a store in a temp dir and a small tree. */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink, utimes, writeFile, link } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ContentStore } from '../../src/content/store.js';

export interface Sandbox {
  dir: string;
  store: ContentStore;
  cleanup: () => Promise<void>;
}

export async function sandbox(): Promise<Sandbox> {
  const dir = await mkdtemp(join(tmpdir(), 'strata-layer-'));
  const store = await ContentStore.open(join(dir, 'store'));
  return { dir, store, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** A small tree with files, a nested dir, a symlink, a hardlink and an empty file; mtimes fixed. */
export async function makeTree(root: string): Promise<void> {
  await mkdir(join(root, 'etc', 'app'), { recursive: true });
  await mkdir(join(root, 'bin'), { recursive: true });
  await writeFile(join(root, 'etc', 'hosts'), '127.0.0.1 localhost\n');
  await writeFile(join(root, 'etc', 'app', 'config.json'), JSON.stringify({ a: 1, b: 'x'.repeat(5000) }));
  await writeFile(join(root, 'bin', 'tool'), Buffer.alloc(300_000, 'tool binary '));
  await chmod(join(root, 'bin', 'tool'), 0o755);
  await writeFile(join(root, 'empty'), '');
  await symlink('../etc/hosts', join(root, 'bin', 'hosts-link'));
  await link(join(root, 'etc', 'hosts'), join(root, 'etc', 'hosts.hard'));
  const when = new Date('2020-01-01T00:00:00Z');
  for (const p of ['etc/hosts', 'etc/app/config.json', 'bin/tool', 'empty', 'etc/app', 'etc', 'bin', '.']) {
    await utimes(join(root, p), when, when);
  }
}

/** sha256 and length of a stream's bytes. */
export async function hashStream(stream: NodeJS.ReadableStream): Promise<{ digest: string; size: number; bytes: Buffer[] }> {
  const hash = createHash('sha256');
  const bytes: Buffer[] = [];
  let size = 0;
  await pipeline(
    stream,
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        bytes.push(chunk);
        size += chunk.length;
        cb();
      },
    }),
  );
  return { digest: `sha256:${hash.digest('hex')}`, size, bytes };
}

export async function hashFile(path: string): Promise<string> {
  return (await hashStream(createReadStream(path))).digest;
}
