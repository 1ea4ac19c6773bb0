/**
 * Reproducible builds: with SOURCE_DATE_EPOCH, the same input built on two
 * empty stores gives the same manifest digest (RUN steps included, where
 * containers can run); without it, COPY/ADD layers are still byte-identical
 * whatever the context files' mtimes.
 */
import { execFileSync } from 'node:child_process';
import { utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { build } from '../../src/build/engine.js';
import { newImageConfig, writeImage } from '../../src/image/config.js';
import { parseReference } from '../../src/image/reference.js';
import { makeLayer } from '../../src/layer/make.js';
import { checkRuntimeUsable, findRuntime } from '../../src/runtime/detect.js';
import { overlaySupported } from '../../src/runtime/overlay.js';
import { BUSYBOX_PATH, makeBusyboxRootfs } from '../helpers/busybox.js';
import { BASE_ENTRIES, builtImage, cleanupAll, makeContext, makeImageFromEntries, openStore, tempDir, type TestStore } from './engine-helpers.js';

afterAll(cleanupAll);

async function canRun(): Promise<boolean> {
  try {
    await findRuntime(undefined, { purpose: 'build' });
    await checkRuntimeUsable({ purpose: 'build' });
    return await overlaySupported();
  } catch {
    return false;
  }
}
/** RUN needs root, runc or crun, and overlayfs. */
const runnable = await canRun();

const CONTEXT = {
  'app/main.txt': 'main\n',
  'app/lib/util.txt': { content: 'util\n', mode: 0o600 },
  'app/bin/tool': { content: '#!/bin/sh\necho tool\n', mode: 0o755 },
  'notes.md': 'notes\n',
};

const DOCKERFILE = [
  'FROM base:1 AS deps',
  'COPY app/lib /deps/lib',
  'FROM base:1',
  'LABEL org.example=repro',
  'ENV APP=/app',
  'WORKDIR /app',
  'COPY app/ ./',
  'COPY --from=deps /deps /deps',
  'ADD layer.tar /unpacked/',
  'COPY --chown=app:staff notes.md /home/app/',
  'CMD ["/app/bin/tool"]',
].join('\n');

async function storeWithBase(): Promise<TestStore> {
  const store = await openStore();
  await makeImageFromEntries(store, 'base:1', BASE_ENTRIES);
  return store;
}

async function contextWith(mtime: number): Promise<string> {
  const ctx = await makeContext({ ...CONTEXT, Dockerfile: DOCKERFILE });
  const src = await tempDir();
  await writeFile(join(src, 'x.txt'), 'in the tar\n');
  execFileSync('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-C', src, '-cf', join(ctx, 'layer.tar'), 'x.txt']);
  for (const path of ['app/main.txt', 'app/lib/util.txt', 'app/bin/tool', 'notes.md', 'app', 'app/lib', 'app/bin', 'layer.tar']) {
    await utimes(join(ctx, path), mtime, mtime);
  }
  return ctx;
}

describe('reproducible builds', () => {
  it('SOURCE_DATE_EPOCH: two empty stores, same manifest digest', async () => {
    const [a, b] = [await storeWithBase(), await storeWithBase()];
    const ctxA = await contextWith(1_600_000_000);
    const ctxB = await contextWith(1_700_000_000);
    const first = await build(a, { contextDir: ctxA, sourceDateEpoch: 1_000_000_000 });
    const second = await build(b, { contextDir: ctxB, sourceDateEpoch: 1_000_000_000 });
    expect(second.manifestDigest).toBe(first.manifestDigest);
    expect(second.id).toBe(first.id);
    const image = await builtImage(a, first.id);
    expect(image.config.created).toBe('2001-09-09T01:46:40Z');
    expect(image.config.history!.slice(1).every((h) => h.created === '2001-09-09T01:46:40Z')).toBe(true);
    expect(JSON.stringify(image.config)).not.toMatch(/hostname|container/i);
  });

  it('without it, COPY and ADD layers are byte-identical across stores and checkouts', async () => {
    const [a, b] = [await storeWithBase(), await storeWithBase()];
    const first = await builtImage(a, (await build(a, { contextDir: await contextWith(1_600_000_000) })).id);
    const second = await builtImage(b, (await build(b, { contextDir: await contextWith(1_700_000_000) })).id);
    expect(second.layers.map((l) => l.digest)).toEqual(first.layers.map((l) => l.digest));
    // Only the dates differ.
    expect(second.config.rootfs).toEqual(first.config.rootfs);
  });

  it.skipIf(!runnable)('with RUN steps too (needs root, runc/crun and overlayfs)', async () => {
    const stores: TestStore[] = [];
    for (let i = 0; i < 2; i++) {
      const store = await openStore();
      const dir = await tempDir();
      await makeBusyboxRootfs(join(dir, 'rootfs'));
      const layer = await makeLayer(store.content, { dir: join(dir, 'rootfs') }, { sourceDateEpoch: 946_684_800 });
      const config = newImageConfig({ created: '2000-01-01T00:00:00Z', config: { Env: [`PATH=${BUSYBOX_PATH}`] }, diffIds: [layer.diffId] });
      const written = await writeImage(store.content, { config, layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }] });
      await store.images.addImage(written.manifest, [parseReference('busybox:repro')]);
      stores.push(store);
    }
    const dockerfile = [
      'FROM busybox:repro',
      'COPY notes.md /notes.md',
      'RUN mkdir -p /out/sub && echo built > /out/sub/file && hostname > /out/hostname && rm /notes.md',
      'RUN touch /tmp && chmod 700 /out',
    ].join('\n');
    const results = [];
    for (const store of stores) {
      const ctx = await makeContext({ 'notes.md': 'n\n', Dockerfile: dockerfile });
      results.push(await build(store, { contextDir: ctx, sourceDateEpoch: 1_000_000_000 }));
    }
    expect(results[1]!.manifestDigest).toBe(results[0]!.manifestDigest);
    const image = await builtImage(stores[0]!, results[0]!.id);
    expect(image.layers).toHaveLength(4);
  });
});
