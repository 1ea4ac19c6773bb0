/**
 * Helpers for content-store tests, in particular for running store code in child
 * processes (which cannot load TypeScript): the modules under test are transpiled
 * once into a temp directory that children import from.
 */
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import ts from 'typescript';

const SRC = join(import.meta.dirname, '..', '..', 'src');
/** Just what the content store needs, so other modules being edited meanwhile do not matter. */
const CHILD_MODULES = ['content/digest.ts', 'content/errors.ts', 'content/lock.ts', 'content/lease.ts', 'content/store.ts', 'util/atomic.ts', 'util/fs.ts', 'util/process.ts'];

/** A fresh temp directory, removed by the returned cleanup. */
export async function tempDir(prefix = 'strata-content-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Transpiles the content-store modules into `outDir`; returns the directory children import from. */
export async function buildChildModules(outDir: string): Promise<string> {
  await mkdir(outDir, { recursive: true });
  await writeFile(join(outDir, 'package.json'), '{"type":"module"}\n');
  for (const file of CHILD_MODULES) {
    const source = await readFile(join(SRC, file), 'utf8');
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

export { startChild, type Child } from '../helpers/child.js';

/** Deterministic pseudo-random bytes (xorshift), generated in chunks so nothing large is held. */
export async function* pseudoRandomChunks(totalBytes: number, seed: number, chunkSize = 256 * 1024): AsyncGenerator<Buffer> {
  let state = seed >>> 0 || 1;
  for (let produced = 0; produced < totalBytes; ) {
    const size = Math.min(chunkSize, totalBytes - produced);
    const chunk = Buffer.allocUnsafe(size);
    for (let i = 0; i + 4 <= size; i += 4) {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      chunk.writeUInt32LE(state >>> 0, i);
    }
    for (let i = size - (size % 4); i < size; i++) chunk[i] = i & 0xff;
    produced += size;
    yield chunk;
  }
}
