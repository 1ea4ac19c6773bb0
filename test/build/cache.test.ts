/**
 * The build cache: what makes a step a hit or a miss, that a cached rebuild
 * reads no file content, and that cached layers survive gc.
 */
import { readdir, readFile, realpath, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build, type BuildOptions } from '../../src/build/engine.js';
import { collectGarbage } from '../../src/image/gc.js';
import { BASE_ENTRIES, builtImage, cleanupAll, layerListing, makeContext, makeImageFromEntries, openStore, type TestStore } from './engine-helpers.js';

let store: TestStore;

beforeAll(async () => {
  store = await openStore();
  await makeImageFromEntries(store, 'base:1', BASE_ENTRIES);
});
afterAll(cleanupAll);

const DOCKERFILE = ['FROM base:1', 'ARG V=1', 'LABEL v=$V', 'COPY a.txt /app/', 'WORKDIR /app/w', 'COPY b.txt /app/', 'ENV DONE=1'].join('\n');

function cachedFlags(result: { steps: { cached: boolean }[] }): boolean[] {
  return result.steps.map((s) => s.cached);
}

async function context(): Promise<string> {
  return makeContext({ Dockerfile: DOCKERFILE, 'a.txt': 'a\n', 'b.txt': 'b\n' });
}

function run(ctx: string, opts: Partial<BuildOptions> = {}) {
  return build(store, { contextDir: ctx, ...opts });
}

describe('build cache', () => {
  it('reuses every step of an unchanged build: same image', async () => {
    const ctx = await context();
    const first = await run(ctx);
    expect(cachedFlags(first)).toEqual([true, false, false, false, false, false, false]);
    const second = await run(ctx);
    expect(cachedFlags(second)).toEqual([true, true, true, true, true, true, true]);
    expect(second.id).toBe(first.id);
    expect(second.steps.map((s) => s.layer)).toEqual(first.steps.map((s) => s.layer));
  });

  it('ignores mtime-only changes', async () => {
    const ctx = await context();
    const first = await run(ctx);
    await utimes(join(ctx, 'a.txt'), 1_700_000_000, 1_700_000_000);
    await utimes(join(ctx, 'b.txt'), 1_700_000_000, 1_700_000_000);
    const second = await run(ctx);
    expect(cachedFlags(second).every(Boolean)).toBe(true);
    expect(second.id).toBe(first.id);
  });

  it('a content change rebuilds from the step that reads it', async () => {
    const ctx = await context();
    const first = await run(ctx);
    await writeFile(join(ctx, 'b.txt'), 'b changed\n');
    const second = await run(ctx);
    expect(cachedFlags(second)).toEqual([true, true, true, true, true, false, false]);
    expect(second.steps[5]!.layer).not.toBe(first.steps[5]!.layer);
    await writeFile(join(ctx, 'a.txt'), 'a changed\n');
    const third = await run(ctx);
    expect(cachedFlags(third)).toEqual([true, true, true, false, false, false, false]);
    // WORKDIR made no new directory content, so its layer is the same diff as before.
    expect(third.steps[4]!.layer).toBe(first.steps[4]!.layer);
  });

  it('a build arg that changes an expanded instruction misses from there', async () => {
    const ctx = await context();
    await run(ctx);
    const other = await run(ctx, { buildArgs: { V: '2' } });
    expect(cachedFlags(other)).toEqual([true, true, false, false, false, false, false]);
    const image = await builtImage(store, other.id);
    expect(image.config.config!.Labels).toEqual({ v: '2' });
  });

  it('noCache runs every step (and the same input still gives the same layers)', async () => {
    const ctx = await context();
    const first = await run(ctx);
    const again = await run(ctx, { noCache: true });
    expect(cachedFlags(again)).toEqual([true, false, false, false, false, false, false]);
    expect(again.steps.map((s) => s.layer)).toEqual(first.steps.map((s) => s.layer));
  });

  it('a different SOURCE_DATE_EPOCH is a different build', async () => {
    const ctx = await context();
    await run(ctx, { sourceDateEpoch: 100 });
    expect(cachedFlags(await run(ctx, { sourceDateEpoch: 100 })).every(Boolean)).toBe(true);
    expect(cachedFlags(await run(ctx, { sourceDateEpoch: 200 }))).toEqual([true, false, false, false, false, false, false]);
  });

  it('a cached rebuild only lstats the context: recorded hashes are trusted while files look unchanged', async () => {
    const ctx = await context();
    await run(ctx);
    const cacheDir = join(store.root, 'strata', 'buildcache');
    const contextPath = await realpath(ctx);
    /** Rewrites this context's `kind` file (sources- or stat-) with `change`. */
    const forge = async (kind: string, change: (data: Record<string, Record<string, { hash?: string; sum?: string }>>) => void): Promise<number> => {
      let forged = 0;
      for (const name of (await readdir(cacheDir)).filter((n) => n.startsWith(`${kind}-`))) {
        const path = join(cacheDir, name);
        const data = JSON.parse(await readFile(path, 'utf8'));
        if (data.context !== contextPath) continue;
        change(data);
        await writeFile(path, JSON.stringify(data));
        forged++;
      }
      return forged;
    };
    // The record of the source answers first.
    expect(await forge('sources', (data) => (data.sources!['b.txt']!.hash = `file:${'e'.repeat(64)}`))).toBe(1);
    const rebuilt = await run(ctx);
    // Had b.txt been read, its real hash would have given a cache hit.
    expect(cachedFlags(rebuilt)).toEqual([true, true, true, true, true, false, false]);
    const image = await builtImage(store, rebuilt.id);
    expect(image.config.history!.at(-2)!.created_by).toBe(`/bin/sh -c #(nop) COPY file:${'e'.repeat(64)} in /app/ `);
    // Without it, the per-path record.
    expect(await forge('sources', (data) => (data.sources = {}))).toBe(1);
    expect(await forge('stat', (data) => (data.entries!['b.txt']!.sum = 'd'.repeat(64)))).toBe(1);
    const again = await run(ctx);
    expect(cachedFlags(again)).toEqual([true, true, true, true, true, false, false]);
    expect((await builtImage(store, again.id)).config.history!.at(-2)!.created_by).toBe(`/bin/sh -c #(nop) COPY file:${'d'.repeat(64)} in /app/ `);
  });

  it('keeps cached layers through gc, and rebuilds a step whose layer is gone', async () => {
    const ctx = await makeContext({ Dockerfile: 'FROM base:1\nCOPY gc.txt /gc/\n', 'gc.txt': 'only in this build\n' });
    const first = await run(ctx, { tags: ['gc-test:1'] });
    await store.images.remove('gc-test:1');
    await collectGarbage(store.images);
    const second = await run(ctx);
    expect(cachedFlags(second)).toEqual([true, true]);
    expect(second.id).toBe(first.id);
    const image = await builtImage(store, second.id);
    expect(await layerListing(store, image.layers[1]!)).toEqual(['gc directory 0755 0:0', 'gc/gc.txt file 0644 0:0']);
    // Without the blob the entry is a miss, and the step runs again.
    await rm(store.content.blobPath(image.layers[1]!.digest), { force: true });
    const third = await run(ctx);
    expect(cachedFlags(third)).toEqual([true, false]);
    expect(third.steps[1]!.layer).toBe(first.steps[1]!.layer);
  });

  it('the same instruction after FROM of a stage is not confused with one in that stage', async () => {
    const dockerfile = ['FROM base:1 AS a', 'CMD ["keep"]', 'FROM a', 'ENTRYPOINT ["/e"]'].join('\n');
    const ctx = await makeContext({ Dockerfile: dockerfile });
    const staged = await builtImage(store, (await run(ctx)).id);
    // In stage "a" CMD was set, so ENTRYPOINT keeps it there; in the second stage CMD is inherited and dropped.
    expect(staged.config.config!.Cmd).toBeUndefined();
    const inline = await makeContext({ Dockerfile: 'FROM base:1 AS a\nCMD ["keep"]\nENTRYPOINT ["/e"]' });
    const single = await builtImage(store, (await run(inline)).id);
    expect(single.config.config!.Cmd).toEqual(['keep']);
  });
});
