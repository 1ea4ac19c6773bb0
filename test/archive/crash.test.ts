/**
 * Acceptance item 6, second half: `import` and `load` killed with SIGKILL at
 * random points. After every kill the store is consistent: every file under
 * blobs/sha256 is a whole blob that verifies, an image is either tagged and
 * complete or not there at all, and fsck reports no fault.
 *
 * What fsck says about what a killed process leaves behind (ingest temp
 * files, an abandoned lease): nothing that is an error. Temp files of dead
 * processes are `stray-temp` *warnings*, reclaimable space rather than
 * damage; gc removes them (and dead leases), after which fsck reports
 * nothing at all.
 */
import { randomBytes } from 'node:crypto';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDigest } from '../../src/content/digest.js';
import { scanLeases } from '../../src/content/lease.js';
import { startChild } from '../content/helpers.js';
import { childModules, craftImage, ociArchiveEntries, openStore, rawTar, workspace } from './helpers.js';

const ATTEMPTS = 20;

let ws: { dir: string; cleanup: () => Promise<void> };
let modules: Awaited<ReturnType<typeof childModules>>;
let loadArchive: string;

beforeAll(async () => {
  ws = await workspace('strata-archive-crash-');
  modules = await childModules(join(ws.dir, 'modules'));
  // A few MB of incompressible data over several layers, so that a kill can land in any of them.
  const noise = (size: number): Buffer => randomBytes(size);
  const image = craftImage(
    [
      { tar: rawTar([{ name: 'a/', type: 'directory' }, { name: 'a/big', content: noise(2 << 20) }]), gzip: true },
      { tar: rawTar([{ name: 'b', content: noise(1 << 20) }]) },
      { tar: rawTar([{ name: 'c', content: 'small\n'.repeat(100_000) }]), gzip: true },
    ],
    'crash',
  );
  loadArchive = join(ws.dir, 'load.tar');
  await writeFile(loadArchive, rawTar(ociArchiveEntries(image, 'crash/load:1')));
});
afterAll(async () => {
  await ws?.cleanup();
});

/** Loads the archive, printing a line per progress report, then "done". */
const LOAD_CHILD = `
  const [imageStoreUrl, loadUrl, root, archive] = process.argv.slice(1);
  const { ImageStore } = await import(imageStoreUrl);
  const { loadImages } = await import(loadUrl);
  const { createReadStream } = await import('node:fs');
  const store = await ImageStore.open(root);
  await loadImages(store, createReadStream(archive, { highWaterMark: 64 * 1024 }), { onProgress: () => console.log('progress') });
  console.log('done');
`;

/** Imports a generated tar stream of a few MB, printing a line per chunk, then "done". */
const IMPORT_CHILD = `
  const [imageStoreUrl, importUrl, root, seed] = process.argv.slice(1);
  const { ImageStore } = await import(imageStoreUrl);
  const { importImage } = await import(importUrl);
  const { Readable } = await import('node:stream');
  const store = await ImageStore.open(root);
  function header(name, size) {
    const h = Buffer.alloc(512);
    h.write(name, 0);
    h.write('0000644\\0', 100); h.write('0000000\\0', 108); h.write('0000000\\0', 116);
    h.write(size.toString(8).padStart(11, '0') + '\\0', 124);
    h.write('00000000000\\0', 136); h.write('        ', 148); h.write('0', 156);
    h.write('ustar\\0', 257); h.write('00', 263);
    let sum = 0; for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\\0 ', 148);
    return h;
  }
  async function* tar() {
    let state = Number(seed);
    for (let f = 0; f < 6; f++) {
      const size = 512 * 1024;
      yield header('file-' + f, size);
      for (let off = 0; off < size; off += 64 * 1024) {
        const chunk = Buffer.alloc(64 * 1024);
        for (let i = 0; i < chunk.length; i += 4) { state = (state * 1103515245 + 12345) >>> 0; chunk.writeUInt32LE(state, i); }
        console.log('chunk');
        yield chunk;
      }
    }
    yield Buffer.alloc(1024);
  }
  await importImage(store, { stream: Readable.from(tar()), label: 'generated' }, { ref: 'crash/import:' + seed });
  console.log('done');
`;

/** Lines a child prints before "done" (measured once per kind by an uninterrupted run). */
const linesBeforeDone = new Map<string, number>();

async function runChild(kind: 'load' | 'import', root: string, seed: number, killAfter?: number): Promise<{ killed: boolean; lines: number }> {
  const child =
    kind === 'load'
      ? startChild(LOAD_CHILD, [modules.imageStore, modules.load, root, loadArchive])
      : startChild(IMPORT_CHILD, [modules.imageStore, modules.importer, root, String(seed)]);
  let lines = 0;
  for (;;) {
    if (killAfter !== undefined && lines >= killAfter) {
      child.process.kill('SIGKILL');
      break;
    }
    const line = await child.nextLine().catch(() => undefined);
    if (line === undefined || line === 'done') break;
    lines++;
  }
  const exit = await child.exited;
  if (exit.signal !== 'SIGKILL') expect(exit.code, child.stderr()).toBe(0);
  return { killed: exit.signal === 'SIGKILL', lines };
}

describe('import and load killed with SIGKILL', () => {
  it(`leave a consistent store, whatever the point (${ATTEMPTS} kills)`, async () => {
    const root = join(ws.dir, 'store');
    const store = await openStore(root);
    // Uninterrupted runs: they must work, and they tell how many progress lines there are.
    linesBeforeDone.set('load', (await runChild('load', join(ws.dir, 'probe-load'), 0)).lines);
    linesBeforeDone.set('import', (await runChild('import', join(ws.dir, 'probe-import'), 0)).lines);
    expect(linesBeforeDone.get('load')).toBeGreaterThan(20);
    expect(linesBeforeDone.get('import')).toBeGreaterThan(20);

    let kills = 0;
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const kind = attempt % 2 === 0 ? 'load' : 'import';
      const total = linesBeforeDone.get(kind)!;
      // Half the kills anywhere, half in the last lines, where blobs commit, records and index.json are written.
      const killAfter = attempt % 4 < 2 ? 1 + Math.floor(Math.random() * (total - 1)) : total - Math.floor(Math.random() * 3);
      const seed = 1000 + attempt;
      const { killed } = await runChild(kind, root, seed, killAfter);
      if (killed) kills++;

      // No partial blob is ever visible: every file in blobs/sha256 is named by a digest and hashes to it.
      for (const name of await readdir(store.content.blobsDir)) {
        expect(isDigest(`sha256:${name}`), `unexpected file ${name} in blobs/sha256`).toBe(true);
        await store.content.verify(`sha256:${name}`);
      }
      const fresh = await openStore(root);
      // A tag is there only with its whole image.
      for (const image of await fresh.list()) {
        for (const tag of image.repoTags) await fresh.checkComplete((await fresh.resolve(tag)).target);
      }
      const report = await fresh.fsck();
      expect(report.faults.filter((f) => f.severity === 'error'), `attempt ${attempt} (${kind}, kill after ${killAfter})`).toEqual([]);
      expect(report.faults.every((f) => f.kind === 'stray-temp')).toBe(true);
      expect(report.ok).toBe(true);

      // A collection reclaims whatever the dead process left; then there is nothing to report.
      await fresh.gc();
      expect(await readdir(fresh.content.tempDir)).toEqual([]);
      // The dead process's lease protects nothing. (A sweep only drops dead
      // lease files while it has candidates to look at, so one may still be there.)
      expect((await scanLeases(root, { checkLiveness: true })).live).toEqual([]);
      expect(await readdir(join(root, 'strata', 'leases'))).toEqual([]);
      expect((await fresh.fsck()).faults).toEqual([]);
    }
    // A kill can come too late (the child finished meanwhile), which is fine, but most must land.
    expect(kills).toBeGreaterThanOrEqual(ATTEMPTS / 4);
    // And the store still works: an uninterrupted load and import succeed on it.
    await runChild('load', root, 0);
    await runChild('import', root, 1);
    const final = await openStore(root);
    expect((await final.resolve('crash/load:1')).manifest.layers).toHaveLength(3);
    expect((await final.resolve('crash/import:1')).manifest.layers).toHaveLength(1);
    expect((await final.fsck()).faults).toEqual([]);
  });
});
