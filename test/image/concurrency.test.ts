import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageIndex } from '../../src/image/types.js';
import { addImage, tempStore, transpileForChild } from './helpers.js';

const CHILDREN = 4;
const TAGS_PER_CHILD = 30;

let modules: string;
let moduleDir: string;

beforeAll(async () => {
  moduleDir = await mkdtemp(join(tmpdir(), 'strata-image-child-'));
  modules = await transpileForChild('image/image-store.ts', moduleDir);
});

afterAll(async () => {
  await rm(moduleDir, { recursive: true, force: true });
});

/** Runs a child that tags `base:1` TAGS_PER_CHILD times, all at once. */
function tagger(root: string, child: number): Promise<{ code: number | null; stderr: string }> {
  const script = `
    const { ImageStore } = await import(${JSON.stringify(pathToFileURL(modules).href)});
    const store = await ImageStore.open(process.argv[1]);
    const child = process.argv[2];
    await Promise.all(Array.from({ length: ${TAGS_PER_CHILD} }, (_, i) => store.tag('base:1', 'c' + child + '/img' + i + ':v' + i)));
  `;
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--input-type=module', '-e', script, '--', root, String(child)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    proc.on('error', reject);
    proc.on('exit', (code) => resolve({ code, stderr }));
  });
}

describe('concurrent tagging', () => {
  it(`${CHILDREN} processes × ${TAGS_PER_CHILD} concurrent tags: no update is lost`, async () => {
    const { store, root, cleanup } = await tempStore();
    try {
      const { configDigest } = await addImage(store, ['base:1']);
      const results = await Promise.all(Array.from({ length: CHILDREN }, (_, c) => tagger(root, c)));
      for (const result of results) expect(result.stderr).toBe('');
      for (const result of results) expect(result.code).toBe(0);

      const index = JSON.parse(await readFile(join(root, 'index.json'), 'utf8')) as ImageIndex;
      expect(index.schemaVersion).toBe(2);
      expect(index.manifests).toHaveLength(1 + CHILDREN * TAGS_PER_CHILD);
      const resolved = await store.resolve('base:1');
      expect(resolved.id).toBe(configDigest);
      const expected = ['base:1'];
      for (let c = 0; c < CHILDREN; c++) for (let i = 0; i < TAGS_PER_CHILD; i++) expected.push(`c${c}/img${i}:v${i}`);
      expect([...resolved.repoTags].sort()).toEqual(expected.sort());
      // No temp file of an index.json write was left behind.
      const fsck = await store.fsck({ quick: true });
      expect(fsck.faults).toEqual([]);
    } finally {
      await cleanup();
    }
  });
});
