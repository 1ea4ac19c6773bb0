/**
 * Acceptance item 4: crafted archives are refused by `load`.
 *
 * Each case is an otherwise valid archive with one thing wrong, either in the
 * outer archive (the tar `docker save` / OCI tools exchange) or inside one of
 * its layer tars. For every case: load rejects with an error naming the
 * offending entry; nothing outside the store changes (a sentinel directory
 * next to the store, a marker under /tmp); no tag is added or moved; fsck
 * finds no fault; and a gc afterwards leaves exactly the blobs the store had
 * before (what the failed load wrote was only ever held by its lease). The
 * hostile layers are also fed to `import` as tarballs, with the same outcome.
 *
 * Device nodes inside a layer are not on the list: Docker images legitimately
 * carry them, and extraction decides what to do with them (create as root,
 * skip or refuse, by option).
 */
import { randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile, mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageStore } from '../../src/image/image-store.js';
import { ArchiveError } from '../../src/archive/load.js';
import { importImage } from '../../src/archive/import.js';
import {
  craftImage,
  dockerArchiveEntries,
  loadBuffer,
  ociArchiveEntries,
  openStore,
  rawTar,
  sha256,
  snapshotTree,
  workspace,
  type CraftedLayer,
  type RawEntry,
} from './helpers.js';

let ws: { dir: string; cleanup: () => Promise<void> };
let store: ImageStore;
let sentinel: string;
const marker = `strata-hostile-${process.pid}-${randomBytes(4).toString('hex')}`;
const tmpMarker = join('/tmp', marker);

const goodLayer: CraftedLayer = {
  tar: rawTar([
    { name: 'etc/', type: 'directory' },
    { name: 'etc/motd', content: 'hello\n' },
    { name: 'bin/', type: 'directory' },
    { name: 'bin/sh', type: 'symlink', linkname: '/bin/busybox' },
  ]),
  gzip: true,
};

beforeAll(async () => {
  ws = await workspace('strata-hostile-');
  sentinel = join(ws.dir, 'sentinel');
  await mkdir(join(sentinel, 'etc'), { recursive: true });
  await writeFile(join(sentinel, 'etc', 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
  store = await openStore(join(ws.dir, 'store'));
  // The store already holds a tagged image, whose tag no failed load may move.
  await loadBuffer(store, rawTar(ociArchiveEntries(craftImage([goodLayer], 'existing'), 'crafted/image:1')));
});

afterAll(async () => {
  await ws?.cleanup();
});

interface Case {
  name: string;
  archive: () => Buffer;
  /** Text the error must contain: the entry it is about. */
  names: string;
  /** Further text the error must contain (the reason). */
  reason?: RegExp;
}

/** Replaces the entry called `name` (or appends when absent) in a list of entries. */
function withEntry(entries: RawEntry[], name: string, replacement: RawEntry | RawEntry[]): RawEntry[] {
  const at = entries.findIndex((e) => e.name === name);
  const list = Array.isArray(replacement) ? replacement : [replacement];
  if (at === -1) return [...entries, ...list];
  return [...entries.slice(0, at), ...list, ...entries.slice(at + 1)];
}

/** An OCI archive whose first entry before index.json is `extra`. */
function ociWithExtra(extra: RawEntry[]): Buffer {
  const entries = ociArchiveEntries(craftImage([goodLayer], 'extra'), 'crafted/attack:1');
  const at = entries.findIndex((e) => e.name === 'index.json');
  return rawTar([...entries.slice(0, at), ...extra, ...entries.slice(at)]);
}

/** An OCI archive whose only layer's blob entry is replaced by `entry(name)` (a link, say). */
function ociWithLayerEntry(entry: (name: string) => RawEntry): { archive: Buffer; layerName: string } {
  const image = craftImage([goodLayer], 'link');
  const layerName = `blobs/sha256/${image.layers[0]!.digest.slice(7)}`;
  return { archive: rawTar(withEntry(ociArchiveEntries(image, 'crafted/attack:1'), layerName, entry(layerName))), layerName };
}

const outerCases: Case[] = [
  {
    name: 'a name climbing out with ..',
    archive: () => ociWithExtra([{ name: `../../sentinel/etc/passwd`, content: 'pwned\n' }]),
    names: '../../sentinel/etc/passwd',
    reason: /'\.\.'/,
  },
  {
    name: 'a name climbing out in the middle (blobs/../../x)',
    archive: () => ociWithExtra([{ name: `blobs/../../${marker}`, content: 'pwned\n' }]),
    names: `blobs/../../${marker}`,
  },
  {
    name: 'an absolute name',
    archive: () => ociWithExtra([{ name: tmpMarker, content: 'pwned\n' }]),
    names: tmpMarker,
    reason: /absolute/,
  },
  {
    name: 'a layer blob that is a symlink out of the archive',
    archive: () => ociWithLayerEntry((name) => ({ name, type: 'symlink', linkname: '../../../sentinel/etc/passwd' })).archive,
    names: 'blobs/sha256/',
    reason: /outside the archive/,
  },
  {
    name: 'a layer blob that is an absolute symlink',
    archive: () => ociWithLayerEntry((name) => ({ name, type: 'symlink', linkname: '/etc/passwd' })).archive,
    names: 'blobs/sha256/',
    reason: /outside the archive/,
  },
  {
    name: 'a layer blob that is a hardlink out of the archive',
    archive: () => ociWithLayerEntry((name) => ({ name, type: 'link', linkname: '../sentinel/etc/passwd' })).archive,
    names: 'blobs/sha256/',
    reason: /outside the archive/,
  },
  {
    name: 'a layer blob that is an absolute hardlink',
    archive: () => ociWithLayerEntry((name) => ({ name, type: 'link', linkname: '/etc/passwd' })).archive,
    names: 'blobs/sha256/',
    reason: /outside the archive/,
  },
  {
    name: 'a whiteout of a parent directory',
    archive: () => ociWithExtra([{ name: '.wh.blobs', content: '' }]),
    names: '.wh.blobs',
    reason: /whiteout/,
  },
  {
    name: 'an opaque whiteout',
    archive: () => ociWithExtra([{ name: 'blobs/.wh..wh..opq', content: '' }]),
    names: 'blobs/.wh..wh..opq',
    reason: /whiteout/,
  },
  {
    name: 'a duplicate index.json',
    archive: () => ociWithExtra([{ name: 'index.json', content: '{"schemaVersion":2,"manifests":[]}' }]),
    names: 'index.json',
    reason: /duplicate/,
  },
  {
    name: 'a duplicate blob',
    archive: () => {
      const image = craftImage([goodLayer], 'dup');
      const layerName = `blobs/sha256/${image.layers[0]!.digest.slice(7)}`;
      const entries = ociArchiveEntries(image, 'crafted/attack:1');
      return rawTar([...entries.slice(0, 3), { name: layerName, content: image.layers[0]!.bytes }, ...entries.slice(3)]);
    },
    names: 'blobs/sha256/',
    reason: /duplicate/,
  },
  {
    name: 'a device node',
    archive: () => ociWithExtra([{ name: 'blobs/sha256/null', type: 'char' }]),
    names: 'blobs/sha256/null',
    reason: /entry type/,
  },
  {
    name: 'data cut short inside a blob',
    archive: () => {
      const image = craftImage([{ tar: Buffer.concat([goodLayer.tar.subarray(0, -1024), rawTar([{ name: 'big', content: randomBytes(20_000) }])]) }], 'trunc');
      const full = rawTar(ociArchiveEntries(image, 'crafted/attack:1'));
      const layerHex = image.layers[0]!.digest.slice(7);
      // Cut in the middle of the layer's data.
      return full.subarray(0, full.indexOf(Buffer.from(layerHex)) + 512 + 10_000);
    },
    names: 'blobs/sha256/',
    reason: /truncated/,
  },
  {
    name: 'an archive cut short between entries',
    archive: () => {
      const full = rawTar(ociArchiveEntries(craftImage([goodLayer], 'cut'), 'crafted/attack:1'));
      // At a header boundary a tar reader cannot tell a cut from the end of
      // the archive; the documents that follow are what is missing.
      return full.subarray(0, full.indexOf(Buffer.from('index.json')));
    },
    names: 'index.json',
    reason: /not an image archive/,
  },
  {
    name: 'a blob that does not match its name',
    archive: () => {
      const image = craftImage([goodLayer], 'mismatch');
      const layerName = `blobs/sha256/${image.layers[0]!.digest.slice(7)}`;
      const tampered = Buffer.from(image.layers[0]!.bytes);
      tampered[tampered.length - 9]! ^= 0xff;
      return rawTar(withEntry(ociArchiveEntries(image, 'crafted/attack:1'), layerName, { name: layerName, content: tampered }));
    },
    names: 'blobs/sha256/',
    reason: /hashes to/,
  },
  {
    name: 'an old-form config that does not match its name',
    archive: () => {
      const image = craftImage([goodLayer], 'oldmismatch');
      const entries = dockerArchiveEntries(image, 'crafted/attack:1');
      const configName = `${image.configDigest.slice(7)}.json`;
      return rawTar(withEntry(entries, configName, { name: configName, content: image.configBytes.toString().replace('oldmismatch', 'oldmismatcH') }));
    },
    names: '.json',
    reason: /hashes to/,
  },
];

/** Layer tars, each wrong in one way; put into an otherwise valid archive. */
const layerCases: { name: string; layer: () => CraftedLayer; names: string; reason?: RegExp }[] = [
  { name: 'a name climbing out with ..', layer: () => ({ tar: rawTar([{ name: '../../sentinel/etc/passwd', content: 'pwned' }]) }), names: '../../sentinel/etc/passwd' },
  { name: 'an absolute name', layer: () => ({ tar: rawTar([{ name: tmpMarker, content: 'pwned' }]) }), names: tmpMarker, reason: /absolute/ },
  {
    name: 'a write through a symlink out of the layer',
    layer: () => ({ tar: rawTar([{ name: 'escape', type: 'symlink', linkname: '../../..' }, { name: `escape/tmp/${marker}`, content: 'pwned' }]) }),
    names: `escape/tmp/${marker}`,
    reason: /symlink/,
  },
  {
    name: 'a hardlink out of the layer',
    layer: () => ({ tar: rawTar([{ name: 'passwd', type: 'link', linkname: '../../sentinel/etc/passwd' }]) }),
    names: 'passwd',
    reason: /hardlink/,
  },
  {
    name: 'an absolute hardlink',
    layer: () => ({ tar: rawTar([{ name: 'passwd', type: 'link', linkname: '/etc/passwd' }]) }),
    names: 'passwd',
    reason: /absolute/,
  },
  { name: 'a whiteout of the parent (.wh...)', layer: () => ({ tar: rawTar([{ name: 'etc/.wh...', content: '' }]) }), names: 'etc/.wh...' },
  {
    name: 'a whiteout of a parent this layer writes into',
    layer: () => ({ tar: rawTar([{ name: '.wh.etc', content: '' }, { name: 'etc/motd', content: 'x' }]) }),
    names: 'etc/motd',
    reason: /whited out/,
  },
  {
    name: 'a path under a whiteout name',
    layer: () => ({ tar: rawTar([{ name: '.wh.etc/passwd', content: 'x' }]) }),
    names: '.wh.etc/passwd',
    reason: /whiteout/,
  },
  {
    name: 'duplicate entries',
    layer: () => ({ tar: rawTar([{ name: 'etc/motd', content: 'a' }, { name: 'etc/motd', content: 'b' }]) }),
    names: 'etc/motd',
    reason: /duplicate/,
  },
  {
    name: 'data cut short',
    layer: () => ({ tar: rawTar([{ name: 'etc/motd', content: 'x'.repeat(5000) }], { end: false }).subarray(0, 512 + 3000) }),
    names: 'layer',
    reason: /malformed layer tar|truncated|Unexpected end/i,
  },
  {
    name: 'a diffID the content does not hash to',
    layer: () => ({ tar: goodLayer.tar, diffId: sha256('something else') }),
    names: 'layer',
    reason: /diffID mismatch/,
  },
];

async function state(): Promise<{ index: string; blobs: string[]; sentinel: Map<string, string>; tmpMarker: boolean }> {
  return {
    index: await readFile(join(store.root, 'index.json'), 'utf8'),
    blobs: (await readdir(store.content.blobsDir)).sort(),
    sentinel: await snapshotTree(sentinel),
    tmpMarker: await stat(tmpMarker).then(() => true, () => false),
  };
}

async function expectRefused(archive: Buffer, names: string, reason?: RegExp): Promise<void> {
  const before = await state();
  const tagsBefore = (await store.list()).flatMap((i) => i.repoTags).sort();
  let error: unknown;
  try {
    await loadBuffer(store, archive);
  } catch (err) {
    error = err;
  }
  expect(error, 'load must fail').toBeInstanceOf(Error);
  const message = (error as Error).message;
  expect(error, message).toBeInstanceOf(ArchiveError);
  expect(message).toContain(names);
  if (reason) expect(message).toMatch(reason);

  const after = await state();
  expect(after.index).toBe(before.index);
  expect((await store.list()).flatMap((i) => i.repoTags).sort()).toEqual(tagsBefore);
  expect(after.sentinel).toEqual(before.sentinel);
  expect(after.tmpMarker).toBe(false);
  const report = await store.fsck();
  expect(report.faults.filter((f) => f.severity === 'error')).toEqual([]);
  expect(report.ok).toBe(true);
  await store.gc();
  expect((await readdir(store.content.blobsDir)).sort()).toEqual(before.blobs);
}

describe('load refuses a hostile outer archive', () => {
  for (const c of outerCases) {
    it(c.name, async () => {
      await expectRefused(c.archive(), c.names, c.reason);
    });
  }

  it('names the link entry exactly', async () => {
    for (const linkname of ['../../../sentinel/etc/passwd', '/etc/passwd']) {
      for (const type of ['symlink', 'link'] as const) {
        const { archive, layerName } = ociWithLayerEntry((name) => ({ name, type, linkname }));
        await expectRefused(archive, JSON.stringify(layerName), /outside the archive/);
      }
    }
  });
});

describe('load refuses an archive with a hostile layer', () => {
  for (const form of ['oci', 'docker'] as const) {
    for (const c of layerCases) {
      it(`${form} archive: ${c.name}`, async () => {
        const image = craftImage([goodLayer, c.layer()], `${form}-${c.name}`);
        const entries = form === 'oci' ? ociArchiveEntries(image, 'crafted/attack:1') : dockerArchiveEntries(image, 'crafted/attack:1');
        await expectRefused(rawTar(entries), c.names, c.reason);
      });
    }
  }
});

describe('links inside an archive', () => {
  it('loads an old-form archive whose layer.tar is a symlink or hardlink to another layer.tar, as docker save writes for shared layers', async () => {
    for (const type of ['symlink', 'link'] as const) {
      const image = craftImage([goodLayer, { tar: rawTar([{ name: `file-${type}`, content: type }]) }], `inside-${type}`);
      const entries = dockerArchiveEntries(image, `crafted/inside:${type}`);
      const manifest = JSON.parse(String(entries.find((e) => e.name === 'manifest.json')!.content)) as [{ Layers: string[] }];
      const [first] = manifest[0].Layers;
      const shared = 'f'.repeat(64);
      // The bottom layer also lives under another v1 id, and the manifest's path is a link to it.
      const linked = withEntry(entries, first!, [
        { name: `${shared}/layer.tar`, content: image.layers[0]!.bytes },
        { name: first!, type, linkname: type === 'symlink' ? `../${shared}/layer.tar` : `${shared}/layer.tar` },
      ]);
      const loaded = await loadBuffer(store, rawTar(linked));
      expect(loaded.map((l) => l.tags)).toEqual([[`crafted/inside:${type}`]]);
      expect((await store.resolve(`crafted/inside:${type}`)).config.rootfs.diff_ids).toEqual(image.config.rootfs.diff_ids);
    }
    expect((await store.fsck()).ok).toBe(true);
  });

  it('refuses a link to an entry that is neither a blob nor a layer, naming the link', async () => {
    const image = craftImage([goodLayer], 'to-other');
    const layerName = `blobs/sha256/${image.layers[0]!.digest.slice(7)}`;
    const entries = withEntry(ociArchiveEntries(image, 'crafted/attack:1'), layerName, [
      { name: 'data/', type: 'directory' },
      { name: 'data/layer', content: image.layers[0]!.bytes },
      { name: layerName, type: 'symlink', linkname: '../../data/layer' },
    ]);
    await expectRefused(rawTar(entries), layerName, /not a blob or layer entry/);
  });
});

describe('import refuses a hostile tarball', () => {
  for (const c of layerCases.filter((l) => !l.name.startsWith('a diffID'))) {
    it(c.name, async () => {
      const before = await state();
      const layer = c.layer();
      const error = await importImage(store, { stream: Readable.from([layer.tar]), label: 'hostile.tar' }, { ref: 'crafted/imported:1' }).then(
        () => undefined,
        (err: Error) => err,
      );
      expect(error, 'import must fail').toBeInstanceOf(Error);
      expect(error!.message).toContain(c.names === 'layer' ? 'hostile.tar' : c.names);
      const after = await state();
      expect(after.index).toBe(before.index);
      expect(after.sentinel).toEqual(before.sentinel);
      expect(after.tmpMarker).toBe(false);
      await expect(store.resolve('crafted/imported:1')).rejects.toThrow(/No such image/);
      expect((await store.fsck()).ok).toBe(true);
      await store.gc();
      expect((await readdir(store.content.blobsDir)).sort()).toEqual(before.blobs);
    });
  }
});
