import { createHash } from 'node:crypto';
import { chmod, mkdir, open, readFile, readdir, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidDigestError, sha256Of, type Digest } from '../../src/content/digest.js';
import {
  BlobCorruptError,
  BlobNotFoundError,
  BlobTooLargeError,
  DigestMismatchError,
  SizeMismatchError,
  StrataError,
} from '../../src/content/errors.js';
import { ContentStore } from '../../src/content/store.js';
import { pseudoRandomChunks, tempDir } from './helpers.js';

let root: string;
let cleanup: () => Promise<void>;
let store: ContentStore;

beforeEach(async () => {
  const tmp = await tempDir();
  root = join(tmp.dir, 'store');
  cleanup = tmp.cleanup;
  store = await ContentStore.open(root);
});
afterEach(async () => {
  await cleanup();
});

async function flipByte(path: string, position: number): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    const one = Buffer.alloc(1);
    await handle.read(one, 0, 1, position);
    one[0] ^= 0x01;
    await handle.write(one, 0, 1, position);
  } finally {
    await handle.close();
  }
}

async function drain(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('ContentStore layout', () => {
  it('creates a valid, empty OCI image layout', async () => {
    expect(JSON.parse(await readFile(join(root, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
    expect(JSON.parse(await readFile(join(root, 'index.json'), 'utf8'))).toEqual({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [],
    });
    for (const dir of ['blobs/sha256', 'strata/tmp', 'strata/leases', 'strata/trash']) {
      expect((await stat(join(root, dir))).isDirectory()).toBe(true);
    }
    expect(store.root).toBe(root);
  });

  it('never replaces an existing index.json', async () => {
    const tagged = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ digest: 'x' }] };
    await writeFile(join(root, 'index.json'), JSON.stringify(tagged));
    await Promise.all([ContentStore.open(root), ContentStore.open(root)]);
    expect(JSON.parse(await readFile(join(root, 'index.json'), 'utf8'))).toEqual(tagged);
  });

  it('refuses a directory with an unsupported layout version', async () => {
    await writeFile(join(root, 'oci-layout'), '{"imageLayoutVersion":"2.0.0"}');
    await expect(ContentStore.open(root)).rejects.toMatchObject({ code: 'BAD_LAYOUT' });
  });

  it('validates digests before using them as paths', async () => {
    expect(() => store.blobPath('sha256:../../etc/passwd')).toThrow(InvalidDigestError);
    await expect(store.has('sha256:' + 'A'.repeat(64))).rejects.toThrow(InvalidDigestError);
    expect(() => store.createReadStream('sha512:' + 'a'.repeat(128))).toThrow(/sha512 is not supported/);
    expect(store.blobPath('sha256:' + 'a'.repeat(64))).toBe(join(root, 'blobs', 'sha256', 'a'.repeat(64)));
  });
});

describe('writing and reading blobs', () => {
  it('stores bytes under their digest, read-only, and reads them back', async () => {
    const info = await store.putBytes('hello world');
    expect(info).toEqual({ digest: sha256Of('hello world'), size: 11 });
    expect(await store.has(info.digest)).toBe(true);
    expect(await store.size(info.digest)).toBe(11);
    expect((await stat(store.blobPath(info.digest))).mode & 0o777).toBe(0o444);
    expect((await store.readBytes(info.digest)).toString()).toBe('hello world');
    expect((await drain(store.createReadStream(info.digest))).toString()).toBe('hello world');
  });

  it('stores JSON compactly and parses it back', async () => {
    const value = { b: [1, 2], a: 'x' };
    const info = await store.putJson(value);
    expect(info.digest).toBe(sha256Of('{"b":[1,2],"a":"x"}'));
    expect(await store.readJson(info.digest)).toEqual(value);
  });

  it('stores the empty blob', async () => {
    const info = await store.putBytes(new Uint8Array());
    expect(info).toEqual({ digest: sha256Of(''), size: 0 });
    expect((await store.readBytes(info.digest)).length).toBe(0);
    await store.verify(info.digest);
  });

  it('ingests async iterables and node streams and deduplicates', async () => {
    const expectedHash = createHash('sha256');
    for await (const chunk of pseudoRandomChunks(3 * 1024 * 1024 + 7, 42)) expectedHash.update(chunk);
    const digest = `sha256:${expectedHash.digest('hex')}` as Digest;

    const first = await store.ingest(pseudoRandomChunks(3 * 1024 * 1024 + 7, 42));
    expect(first).toEqual({ digest, size: 3 * 1024 * 1024 + 7 });
    const second = await store.ingest(Readable.from(pseudoRandomChunks(3 * 1024 * 1024 + 7, 42)), { digest, size: first.size });
    expect(second).toEqual(first);
    await store.verify(digest);
    expect(await readdir(store.tempDir)).toEqual([]);
    const listed: Digest[] = [];
    for await (const d of store.list()) listed.push(d);
    expect(listed).toEqual([digest]);
  });

  it('refuses content that does not match the expected digest and stores nothing', async () => {
    const wrong = sha256Of('something else');
    const err = await store.ingest(Readable.from([Buffer.from('payload')]), { digest: wrong }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DigestMismatchError);
    expect(err).toBeInstanceOf(StrataError);
    expect((err as DigestMismatchError).code).toBe('DIGEST_MISMATCH');
    expect((err as Error).message).toContain(sha256Of('payload'));
    expect(await store.has(sha256Of('payload'))).toBe(false);
    expect(await readdir(store.tempDir)).toEqual([]);
    expect(await readdir(store.blobsDir)).toEqual([]);
  });

  it('refuses content of the wrong size, short or long, and stores nothing', async () => {
    await expect(store.ingest(Readable.from([Buffer.from('12345')]), { size: 6 })).rejects.toThrow(SizeMismatchError);
    await expect(store.ingest(pseudoRandomChunks(4 * 1024 * 1024, 1), { size: 1000 })).rejects.toThrow(/more than 1000 bytes, expected 1000/);
    expect(await readdir(store.tempDir)).toEqual([]);
    expect(await readdir(store.blobsDir)).toEqual([]);
  });

  it('leaves nothing behind when the source fails midway', async () => {
    async function* failing(): AsyncGenerator<Buffer> {
      yield Buffer.alloc(1024, 1);
      throw new Error('network went away');
    }
    await expect(store.ingest(failing())).rejects.toThrow('network went away');
    expect(await readdir(store.tempDir)).toEqual([]);
    expect(await readdir(store.blobsDir)).toEqual([]);
  });

  it('writer: commit ends the stream, abort discards, nothing is visible before commit', async () => {
    const writer = store.writer();
    writer.write('abc');
    writer.write(Buffer.from('def'));
    expect(await readdir(store.blobsDir)).toEqual([]);
    const info = await writer.commit();
    expect(info.digest).toBe(sha256Of('abcdef'));
    expect(await writer.commit()).toEqual(info);

    const discarded = store.writer();
    discarded.write('never stored');
    await discarded.abort();
    expect(await readdir(store.tempDir)).toEqual([]);
    expect(await store.has(sha256Of('never stored'))).toBe(false);

    // Aborting right away, while the temp file is still being opened.
    const early = store.writer();
    await early.abort();
    expect(await readdir(store.tempDir)).toEqual([]);
  });

  it('writer respects backpressure', async () => {
    const writer = store.writer();
    const chunk = Buffer.alloc(512 * 1024, 7);
    let sawBackpressure = false;
    for (let i = 0; i < 8; i++) {
      if (!writer.write(chunk)) {
        sawBackpressure = true;
        await new Promise((resolve) => writer.once('drain', resolve));
      }
    }
    expect(sawBackpressure).toBe(true);
    const info = await writer.commit();
    expect(info.size).toBe(4 * 1024 * 1024);
  });

  it('replaces a stored copy of the wrong size when the content is written again', async () => {
    const info = await store.putBytes('the real content');
    const path = store.blobPath(info.digest);
    await chmod(path, 0o644);
    await truncate(path, 3);
    await expect(store.verify(info.digest)).rejects.toThrow(BlobCorruptError);
    await store.putBytes('the real content');
    await store.verify(info.digest);
  });

  it('keeps memory flat while streaming a large blob in and out', async () => {
    const size = 160 * 1024 * 1024;
    const baseline = process.memoryUsage();
    let peak = 0;
    const sample = (): void => {
      const now = process.memoryUsage();
      peak = Math.max(peak, now.arrayBuffers - baseline.arrayBuffers + (now.heapUsed - baseline.heapUsed));
    };
    async function* sampled(): AsyncGenerator<Buffer> {
      for await (const chunk of pseudoRandomChunks(size, 9, 1024 * 1024)) {
        sample();
        yield chunk;
      }
    }
    const info = await store.ingest(sampled());
    expect(info.size).toBe(size);
    let seen = 0;
    for await (const chunk of store.createReadStream(info.digest)) {
      seen += (chunk as Buffer).length;
      if (seen % (8 * 1024 * 1024) < (chunk as Buffer).length) sample();
    }
    expect(seen).toBe(size);
    // Buffering the blob would need at least its size; garbage not yet collected
    // accounts for the rest of the allowance.
    expect(peak).toBeLessThan(96 * 1024 * 1024);
  });
});

describe('missing and corrupt blobs', () => {
  it('reports a missing blob by name from every reader', async () => {
    const missing = sha256Of('absent');
    expect(await store.has(missing)).toBe(false);
    expect(await store.size(missing)).toBeUndefined();
    await expect(drain(store.createReadStream(missing))).rejects.toThrow(BlobNotFoundError);
    await expect(store.readBytes(missing)).rejects.toThrow(`blob ${missing} not found`);
    await expect(store.verify(missing)).rejects.toMatchObject({ code: 'BLOB_NOT_FOUND', digest: missing });
  });

  it('detects one flipped byte in createReadStream, readBytes, readJson and verify, naming the blob', async () => {
    const content = Buffer.alloc(600 * 1024, 0x5a);
    const { digest } = await store.putBytes(content);
    const path = store.blobPath(digest);
    await chmod(path, 0o644);
    await flipByte(path, 300 * 1024);
    const flipped = Buffer.from(content);
    flipped[300 * 1024] ^= 0x01;
    const message = `blob ${digest} is corrupt: content hashes to ${sha256Of(flipped)}`;

    const streamError = await drain(store.createReadStream(digest)).catch((e: unknown) => e);
    expect(streamError).toBeInstanceOf(BlobCorruptError);
    expect((streamError as Error).message).toBe(message);
    expect((streamError as BlobCorruptError).actualDigest).toBe(sha256Of(flipped));
    await expect(store.readBytes(digest)).rejects.toThrow(message);
    await expect(store.verify(digest)).rejects.toThrow(message);
    // Unverified reads are for callers that check for themselves.
    expect((await drain(store.createReadStream(digest, { verify: false }))).equals(flipped)).toBe(true);

    const json = await store.putJson({ hello: 'world' });
    await chmod(store.blobPath(json.digest), 0o644);
    await flipByte(store.blobPath(json.digest), 3);
    await expect(store.readJson(json.digest)).rejects.toThrow(`blob ${json.digest} is corrupt`);
  });

  it('fails a corrupt stream before it ends, so a pipeline consumer sees the error', async () => {
    const { digest } = await store.putBytes('x'.repeat(1000));
    await chmod(store.blobPath(digest), 0o644);
    await flipByte(store.blobPath(digest), 999);
    const writer = store.writer();
    await expect(pipeline(store.createReadStream(digest), writer)).rejects.toThrow(BlobCorruptError);
    await writer.abort();
    expect(await readdir(store.tempDir)).toEqual([]);
  });

  it('refuses to read large blobs into memory', async () => {
    const { digest } = await store.putBytes(Buffer.alloc(2048));
    await expect(store.readBytes(digest, 1024)).rejects.toThrow(BlobTooLargeError);
    await expect(store.readBytes(digest, 1024)).rejects.toThrow(`blob ${digest} is 2048 bytes`);
  });

  it('says which blob is not JSON', async () => {
    const { digest } = await store.putBytes('not json {');
    await expect(store.readJson(digest)).rejects.toMatchObject({ code: 'BLOB_NOT_JSON', message: expect.stringContaining(digest) });
  });
});

describe('listing, deleting and cleaning', () => {
  it('lists only valid blob names and deletes blobs', async () => {
    const a = await store.putBytes('a');
    const b = await store.putBytes('b');
    await writeFile(join(store.blobsDir, 'README'), 'not a blob');
    await writeFile(join(store.blobsDir, 'A'.repeat(64)), 'uppercase is not a digest');
    await mkdir(join(store.blobsDir, 'f'.repeat(64)));
    const listed: Digest[] = [];
    for await (const d of store.list()) listed.push(d);
    expect(listed.sort()).toEqual([a.digest, b.digest].sort());

    expect(await store.delete(a.digest)).toBe(true);
    expect(await store.delete(a.digest)).toBe(false);
    expect(await store.has(a.digest)).toBe(false);
  });

  it('cleanTemp removes temp files of dead processes only', async () => {
    const deadPid = 2 ** 22 + 12345; // above pid_max's default ceiling, so never a running process
    const dead = join(store.tempDir, `.tmp-ingest-${deadPid}-0123456789abcdef`);
    const mine = join(store.tempDir, `.tmp-ingest-${process.pid}-0123456789abcdef`);
    const foreign = join(store.tempDir, 'somebody-elses-file');
    for (const path of [dead, mine, foreign]) await writeFile(path, 'x');
    expect(await store.cleanTemp()).toEqual([dead]);
    expect((await readdir(store.tempDir)).sort()).toEqual(['.tmp-ingest-' + process.pid + '-0123456789abcdef', 'somebody-elses-file'].sort());
  });
});
