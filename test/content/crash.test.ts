import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDigest } from '../../src/content/digest.js';
import { ContentStore } from '../../src/content/store.js';
import { buildChildModules, startChild, tempDir } from './helpers.js';

const CHUNK = 256 * 1024;
const CHUNKS_PER_BLOB = 24;
const BLOBS_PER_CHILD = 3;

let dir: string;
let cleanup: () => Promise<void>;
let storeUrl: string;

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('strata-crash-'));
  const modules = await buildChildModules(join(dir, 'modules-out'));
  storeUrl = pathToFileURL(join(modules, 'content', 'store.js')).href;
});
afterAll(async () => {
  await cleanup();
});

/** Ingests a few large random blobs, reporting each chunk and each commit on stdout. */
const INGESTING_CHILD = `
  import { randomBytes } from 'node:crypto';
  const [storeUrl, root, chunkSize, chunksPerBlob, blobs] = process.argv.slice(1);
  const { ContentStore } = await import(storeUrl);
  const store = await ContentStore.open(root);
  async function* content() {
    for (let i = 0; i < Number(chunksPerBlob); i++) {
      console.log('chunk');
      yield randomBytes(Number(chunkSize));
    }
  }
  for (let b = 0; b < Number(blobs); b++) {
    const { digest } = await store.ingest(content());
    console.log('committed ' + digest);
  }
  console.log('done');
`;

describe('an ingest killed with SIGKILL', () => {
  it('never leaves a partial or corrupt blob, at any point', async () => {
    const root = join(dir, 'store');
    const store = await ContentStore.open(root);
    const linesPerChild = BLOBS_PER_CHILD * (CHUNKS_PER_BLOB + 1);
    const committed: string[] = [];
    for (let attempt = 0; attempt < 10; attempt++) {
      // Alternate uniformly random points with points right after a blob's last
      // chunk, where the kill lands in fsync, chmod or rename.
      const killAfter =
        attempt % 2 === 0
          ? 1 + Math.floor(Math.random() * linesPerChild)
          : (1 + Math.floor(Math.random() * BLOBS_PER_CHILD)) * (CHUNKS_PER_BLOB + 1) - 1;
      const child = startChild(INGESTING_CHILD, [storeUrl, root, String(CHUNK), String(CHUNKS_PER_BLOB), String(BLOBS_PER_CHILD)]);
      for (let seen = 0; seen < killAfter; seen++) {
        const line = await child.nextLine();
        if (line.startsWith('committed ')) committed.push(line.slice('committed '.length));
      }
      child.process.kill('SIGKILL');
      const { signal, code } = await child.exited;
      expect(signal === 'SIGKILL' || code === 0, child.stderr()).toBe(true);

      for (const name of await readdir(store.blobsDir)) {
        const digest = `sha256:${name}`;
        expect(isDigest(digest), `unexpected file ${name} in blobs/sha256`).toBe(true);
        await store.verify(digest);
      }
      for (const digest of committed) expect(await store.has(digest), `committed ${digest} is missing`).toBe(true);
      // Whatever the child left in the temp directory belongs to a dead process.
      await store.cleanTemp();
      expect(await readdir(store.tempDir)).toEqual([]);
    }
  });
});
