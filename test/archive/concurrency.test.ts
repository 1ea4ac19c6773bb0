/**
 * Acceptance item 6, first half: several processes tagging, importing,
 * loading, untagging and collecting garbage in one root at once. Afterwards
 * every name a process left in place resolves to the image it put there,
 * every name it removed is gone, and fsck, which re-hashes every blob and
 * recomputes every diffID, finds nothing wrong.
 */
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startChild } from '../content/helpers.js';
import { childModules, craftImage, loadBuffer, ociArchiveEntries, openStore, rawTar, workspace } from './helpers.js';

const CHILDREN = 4;
const OPS_PER_CHILD = 20;
const BASE = 'shared/base:1';

let ws: { dir: string; cleanup: () => Promise<void> };
let modules: Awaited<ReturnType<typeof childModules>>;

beforeAll(async () => {
  ws = await workspace('strata-archive-concurrency-');
  modules = await childModules(join(ws.dir, 'modules'));
});
afterAll(async () => {
  await ws?.cleanup();
});

type Op = 'import' | 'load' | 'tag' | 'untag' | 'gc';

/** A fixed, mixed sequence per child: every kind of operation, interleaved differently in each child. */
function opsFor(child: number): Op[] {
  const pattern: Op[] = ['import', 'tag', 'load', 'gc', 'tag', 'untag', 'import', 'load', 'tag', 'untag'];
  return Array.from({ length: OPS_PER_CHILD }, (_, i) => pattern[(i + child * 3) % pattern.length]!);
}

/**
 * Runs the ops one after another and prints, as its last line, the names it
 * expects to exist (name → image ID) and those it removed.
 */
const CHILD = `
  const [imageStoreUrl, loadUrl, importUrl, root, dataDir, child, opsJson] = process.argv.slice(1);
  const { ImageStore } = await import(imageStoreUrl);
  const { loadImages } = await import(loadUrl);
  const { importImage } = await import(importUrl);
  const { createReadStream } = await import('node:fs');
  const store = await ImageStore.open(root);
  const ops = JSON.parse(opsJson);
  const kept = {};
  const removed = [];
  for (const [i, op] of ops.entries()) {
    switch (op) {
      case 'import': {
        const ref = 'c' + child + '/import:' + i;
        const result = await importImage(store, { file: dataDir + '/import-' + child + '-' + i + '.tar' }, { ref });
        kept[ref] = result.id;
        break;
      }
      case 'load': {
        const loaded = await loadImages(store, createReadStream(dataDir + '/load-' + child + '-' + i + '.tar'));
        for (const image of loaded) for (const tag of image.tags) kept[tag] = image.id;
        break;
      }
      case 'tag': {
        const ref = 'c' + child + '/tag:' + i;
        kept[ref] = (await store.tag('${BASE}', ref)).id;
        break;
      }
      case 'untag': {
        const victim = Object.keys(kept)[0];
        if (victim) {
          await store.untag(victim);
          delete kept[victim];
          removed.push(victim);
        }
        break;
      }
      case 'gc':
        await store.gc();
        break;
    }
  }
  console.log(JSON.stringify({ kept, removed }));
`;

describe('concurrent processes on one root', () => {
  it(`${CHILDREN} processes × ${OPS_PER_CHILD} mixed ops (import, load, tag, untag, gc): every name and blob intact`, async () => {
    const root = join(ws.dir, 'store');
    const data = join(ws.dir, 'data');
    await mkdir(data);
    const store = await openStore(root);
    const base = craftImage([{ tar: rawTar([{ name: 'base', content: 'base\n' }]), gzip: true }], 'base');
    await loadBuffer(store, rawTar(ociArchiveEntries(base, BASE)));

    // Inputs: distinct content per op, so imports and loads add new blobs that gc must not take.
    for (let c = 0; c < CHILDREN; c++) {
      for (const [i, op] of opsFor(c).entries()) {
        const files = Array.from({ length: 8 }, (_, f) => ({ name: `data/c${c}-op${i}-f${f}`, content: `child ${c} op ${i} file ${f}\n`.repeat(300) }));
        if (op === 'import') await writeFile(join(data, `import-${c}-${i}.tar`), rawTar([{ name: 'data/', type: 'directory' }, ...files]));
        if (op === 'load') {
          const image = craftImage([{ tar: rawTar([{ name: 'base', content: 'base\n' }]), gzip: true }, { tar: rawTar(files), gzip: i % 2 === 0 }], `c${c}-${i}`);
          await writeFile(join(data, `load-${c}-${i}.tar`), rawTar(ociArchiveEntries(image, `c${c}/load:${i}`)));
        }
      }
    }

    const children = Array.from({ length: CHILDREN }, (_, c) =>
      startChild(CHILD, [modules.imageStore, modules.load, modules.importer, root, data, String(c), JSON.stringify(opsFor(c))]),
    );
    const outcomes = await Promise.all(
      children.map(async (child) => {
        const line = await child.nextLine().catch(() => '');
        const exit = await child.exited;
        expect(child.stderr()).toBe('');
        expect(exit.code).toBe(0);
        return JSON.parse(line) as { kept: Record<string, string>; removed: string[] };
      }),
    );

    const fresh = await openStore(root);
    let names = 0;
    for (const { kept, removed } of outcomes) {
      for (const [name, id] of Object.entries(kept)) {
        const image = await fresh.resolve(name);
        expect(image.id, name).toBe(id);
        await fresh.checkComplete(image.target);
        names++;
      }
      for (const name of removed) await expect(fresh.resolve(name), name).rejects.toThrow(/No such image/);
    }
    expect(names).toBeGreaterThan(CHILDREN * 8);
    expect((await fresh.resolve(BASE)).id).toBe(base.configDigest);

    const report = await fresh.fsck();
    expect(report.faults.filter((f) => f.severity === 'error')).toEqual([]);
    expect(report.ok).toBe(true);
    // After a final collection nothing at all is left to warn about.
    await fresh.gc();
    const after = await fresh.fsck();
    expect(after.faults).toEqual([]);
    expect(after.checked.blobs).toBeGreaterThan(names);
  });
});
