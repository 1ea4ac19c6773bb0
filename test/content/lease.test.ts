import { mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { sha256Of, type Digest } from '../../src/content/digest.js';
import { acquireLock, withLock } from '../../src/content/lock.js';
import { ContentStore } from '../../src/content/store.js';
import { buildChildModules, startChild, tempDir } from './helpers.js';

let root: string;
let cleanup: () => Promise<void>;
let store: ContentStore;

beforeEach(async () => {
  const tmp = await tempDir('strata-lease-');
  root = join(tmp.dir, 'store');
  cleanup = tmp.cleanup;
  store = await ContentStore.open(root);
});
afterEach(async () => {
  await cleanup();
});

async function listed(): Promise<Set<Digest>> {
  const all = new Set<Digest>();
  for await (const digest of store.list()) all.add(digest);
  return all;
}

async function drain(stream: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += chunk.toString();
  return text;
}

describe('leases', () => {
  it('are files listing digests, removed on release', async () => {
    const lease = await store.lease();
    const digest = sha256Of('x');
    await Promise.all([lease.add(digest), lease.add(digest)]);
    const lines = (await readFile(lease.file, 'utf8')).split('\n').filter((line) => line && !line.startsWith('#'));
    expect(lines).toEqual([digest]);
    expect([...lease.digests]).toEqual([digest]);
    expect(() => lease.add('sha256:nope')).toThrow(/invalid digest/);
    await lease.release();
    await lease.release();
    expect(lease.isReleased).toBe(true);
    expect(await readdir(join(root, 'strata', 'leases'))).toEqual([]);
    await expect(lease.add(digest)).rejects.toMatchObject({ code: 'LEASE_RELEASED' });
  });

  it('withLease releases even when the operation fails', async () => {
    await expect(
      store.withLease(async (lease) => {
        await lease.add(sha256Of('y'));
        throw new Error('import failed');
      }),
    ).rejects.toThrow('import failed');
    expect(await readdir(join(root, 'strata', 'leases'))).toEqual([]);
  });
});

describe('sweep', () => {
  it('removes exactly the blobs that are neither referenced nor leased', async () => {
    const kept = await store.putBytes('referenced');
    const leasedLater = await store.putBytes('leased');
    const garbage = await store.putBytes('garbage!');
    const lease = await store.lease();
    expect(await store.claim(leasedLater.digest, lease)).toBe(true);

    const first = await withLock(root, 'store', () => store.sweep(new Set([kept.digest])));
    expect(first).toEqual({ removed: [garbage.digest], bytes: 8, deadLeases: [] });
    expect(await listed()).toEqual(new Set([kept.digest, leasedLater.digest]));

    await lease.release();
    const second = await withLock(root, 'store', () => store.sweep(new Set([kept.digest])));
    expect(second.removed).toEqual([leasedLater.digest]);
    expect(await listed()).toEqual(new Set([kept.digest]));
    expect(await readdir(join(root, 'strata', 'trash'))).toEqual([]);
  });

  it('protects blobs committed through a writer with a lease', async () => {
    const lease = await store.lease();
    const { digest } = await store.ingest([Buffer.from('layer bytes')], {}, lease);
    const writer = store.writer({ lease });
    writer.end('config bytes');
    const config = await writer.commit();
    await store.sweep(new Set());
    expect(await listed()).toEqual(new Set([digest, config.digest]));
    await lease.release();
  });

  it('keeps a blob whose lease entry is added after the first look, before it is trashed', async () => {
    const blobs = await Promise.all(['a', 'b', 'c'].map((s) => store.putBytes(s)));
    const lease = await store.lease();
    const claimed: boolean[] = [];
    await store.sweep(new Set(), {
      afterLeaseScan: async () => {
        // The race the protocol is for: a writer re-storing blob a and a reuser
        // claiming blob b, both of which still find their blob in place.
        const writer = store.writer({ lease });
        writer.end('a');
        await writer.commit();
        claimed.push(await store.claim(blobs[1]!.digest, lease));
      },
    });
    expect(claimed).toEqual([true]);
    expect(await listed()).toEqual(new Set([blobs[0]!.digest, blobs[1]!.digest]));
    await store.verify(blobs[0]!.digest);
    await lease.release();
  });

  it('keeps a blob whose lease entry is added while it is in the trash', async () => {
    const blobs = await Promise.all(['a', 'b', 'c'].map((s) => store.putBytes(s)));
    const lease = await store.lease();
    let claimedWhileTrashed: boolean | undefined;
    let readWhileTrashed: string | undefined;
    await store.sweep(new Set(), {
      afterTrash: async (trashed) => {
        expect(new Set(trashed)).toEqual(new Set(blobs.map((b) => b.digest)));
        // The writer finds blob a missing and stores it again.
        const writer = store.writer({ lease });
        writer.end('a');
        await writer.commit();
        // The reuser finds blob b missing, which is the truth at this instant.
        claimedWhileTrashed = await store.claim(blobs[1]!.digest, lease);
        // A reader still gets blob c, from the trash.
        readWhileTrashed = await drain(store.createReadStream(blobs[2]!.digest));
      },
    });
    expect(claimedWhileTrashed).toBe(false);
    expect(readWhileTrashed).toBe('c');
    expect(await listed()).toEqual(new Set([blobs[0]!.digest, blobs[1]!.digest]));
    await store.verify(blobs[0]!.digest);
    await store.verify(blobs[1]!.digest);
    await lease.release();
  });

  it('writers and claimers publish the lease entry before they look for the blob', async () => {
    // The invariant the sweep relies on, checked at the moment of the lookup:
    // another process reading the lease file then must already see the digest.
    const lease = await store.lease();
    const lookups: { digest: string; listed: boolean }[] = [];
    const size = store.size.bind(store);
    vi.spyOn(store, 'size').mockImplementation(async (digest: string) => {
      lookups.push({ digest, listed: (await readFile(lease.file, 'utf8')).split('\n').includes(digest) });
      return size(digest);
    });
    const stored = await store.putBytes('first copy', lease);
    await store.putBytes('first copy', lease);
    const writer = store.writer({ lease });
    writer.end('via writer');
    const written = await writer.commit();
    await store.claim(sha256Of('not there'), lease);
    // Every lookup of each digest (a write may look more than once) came after its lease entry.
    expect(new Set(lookups.map((l) => l.digest))).toEqual(new Set([stored.digest, written.digest, sha256Of('not there')]));
    expect(lookups.filter((l) => !l.listed)).toEqual([]);
    vi.restoreAllMocks();
    await lease.release();
  });

  it('never loses a blob that a racing writer or claimer was promised', async () => {
    for (let round = 0; round < 5; round++) {
      const contents = Array.from({ length: 120 }, (_, i) => `round ${round} blob ${i}`);
      const digests = (await Promise.all(contents.map((c) => store.putBytes(c)))).map((b) => b.digest);
      const lease = await store.lease();
      const promised = new Set<Digest>();
      // Several concurrent racers, each alternating between re-storing a blob and
      // claiming one, in an order unrelated to the sweep's.
      const racer = async (worker: number): Promise<void> => {
        for (let i = worker; i < contents.length; i += 4) {
          const pick = (i * 37 + round * 11) % contents.length;
          if (i % 2 === 0) {
            promised.add((await store.putBytes(contents[pick]!, lease)).digest);
          } else if (await store.claim(digests[pick]!, lease)) {
            promised.add(digests[pick]!);
          }
        }
      };
      await Promise.all([withLock(root, 'store', () => store.sweep(new Set(), { batchSize: 2 })), ...[0, 1, 2, 3].map(racer)]);
      const present = await listed();
      for (const digest of promised) {
        expect(present.has(digest), `${digest} was promised but is gone`).toBe(true);
        await store.verify(digest);
      }
      await lease.release();
    }
    await store.sweep(new Set());
    expect(await listed()).toEqual(new Set());
  });

  it('puts back blobs left in the trash by a crashed sweep', async () => {
    const blob = await store.putBytes('survivor');
    const crashed = join(root, 'strata', 'trash', 'sweep-1-abcdef');
    await mkdir(crashed, { recursive: true });
    const hex = blob.digest.slice('sha256:'.length);
    await rename(store.blobPath(blob.digest), join(crashed, hex));
    await writeFile(join(crashed, 'junk'), 'x');

    expect((await store.sweep(new Set([blob.digest]))).removed).toEqual([]);
    expect(await listed()).toEqual(new Set([blob.digest]));
    expect(await readdir(join(root, 'strata', 'trash'))).toEqual([]);
  });
});

describe('leases across processes', () => {
  let modulesDir: string;
  let cleanupModules: () => Promise<void>;
  beforeAll(async () => {
    const tmp = await tempDir('strata-lease-modules-');
    cleanupModules = tmp.cleanup;
    modulesDir = await buildChildModules(tmp.dir);
  });
  afterAll(async () => {
    await cleanupModules();
  });

  it('treats the lease of a SIGKILLed process as dead and frees its lock at once', async () => {
    const blob = await store.putBytes('held by the child');
    const child = startChild(
      `
      const [storeUrl, lockUrl, root, digest] = process.argv.slice(1);
      const { ContentStore } = await import(storeUrl);
      const { acquireLock } = await import(lockUrl);
      const store = await ContentStore.open(root);
      await acquireLock(root, 'store');
      const lease = await store.lease();
      console.log(String(await store.claim(digest, lease)));
      setInterval(() => {}, 1 << 30);
      `,
      [pathToFileURL(join(modulesDir, 'content', 'store.js')).href, pathToFileURL(join(modulesDir, 'content', 'lock.js')).href, root, blob.digest],
    );
    expect(await child.nextLine()).toBe('true');

    // While the child lives, its lease protects the blob (the sweep runs without
    // the lock here only because the child holds it).
    const whileAlive = await store.sweep(new Set());
    expect(whileAlive.removed).toEqual([]);
    expect(await store.has(blob.digest)).toBe(true);

    const lockTaken = acquireLock(root, 'store');
    child.process.kill('SIGKILL');
    expect((await child.exited).signal).toBe('SIGKILL');
    const release = await lockTaken;
    try {
      const afterDeath = await store.sweep(new Set());
      expect(afterDeath.removed).toEqual([blob.digest]);
      expect(afterDeath.deadLeases).toHaveLength(1);
      expect(await readdir(join(root, 'strata', 'leases'))).toEqual([]);
    } finally {
      await release();
    }
  });
});
