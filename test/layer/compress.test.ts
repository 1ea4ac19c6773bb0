import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_GZIP_LEVEL,
  GZIP_BLOCK_SIZE,
  UnsupportedCompressionError,
  createCompressor,
  createDecompressor,
  zstdAvailable,
  type CompressorOptions,
} from '../../src/layer/compress.js';
import type { Compression } from '../../src/image/mediatypes.js';

const SMALL_BLOCK = 32 * 1024;

/** Runs `chunks` through a fresh compressor and returns everything it emitted. */
async function compress(chunks: Buffer[], compression: Compression = 'gzip', opts: CompressorOptions = {}): Promise<Buffer> {
  return collect(Readable.from(chunks), createCompressor(compression, opts));
}

async function collect(source: Readable, transform: NodeJS.ReadWriteStream): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(
    source,
    transform,
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        out.push(chunk);
        cb();
      },
    }),
  );
  return Buffer.concat(out);
}

/** Splits `data` at the given cut points (any order, any values). */
function cut(data: Buffer, points: number[]): Buffer[] {
  const offsets = [...new Set(points.map((p) => p % (data.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let last = 0;
  for (const offset of offsets) {
    if (offset > last) chunks.push(data.subarray(last, offset));
    last = Math.max(last, offset);
  }
  if (last < data.length) chunks.push(data.subarray(last));
  return chunks;
}

/** Compressible, structured content: repeated words with random noise, like text in a tree. */
function textLike(size: number, seed: number): Buffer {
  const words = ['layer', 'strata', 'digest', 'sha256', '/usr/lib/', 'import', 'export', 'function', '\n', '    ', '{}', 'const'];
  const parts: string[] = [];
  let length = 0;
  let x = seed >>> 0 || 1;
  while (length < size) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const word = x % 7 === 0 ? String(x) : words[x % words.length]!;
    parts.push(word);
    length += word.length;
  }
  return Buffer.from(parts.join('')).subarray(0, size);
}

const hasTool = (tool: string): boolean => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;

describe('parallel gzip', () => {
  it('round-trips random inputs of many sizes byte-exact, whatever the chunking and thread count', async () => {
    const sizes = fc.oneof(
      fc.constantFrom(0, 1, SMALL_BLOCK - 1, SMALL_BLOCK, SMALL_BLOCK + 1, 2 * SMALL_BLOCK, 2 * SMALL_BLOCK + 1, 32 * 1024 + 7),
      fc.integer({ min: 0, max: 5 * SMALL_BLOCK }),
    );
    await fc.assert(
      fc.asyncProperty(
        sizes,
        fc.boolean(),
        fc.integer({ min: 1, max: 0x7fffffff }),
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 9 }),
        async (size, compressible, seed, cuts, threads, level) => {
          const data = compressible ? textLike(size, seed) : randomBytes(size);
          const whole = await compress([data], 'gzip', { blockSize: SMALL_BLOCK, level, threads: 1 });
          const pieces = await compress(cut(data, cuts), 'gzip', { blockSize: SMALL_BLOCK, level, threads });
          expect(pieces.equals(whole)).toBe(true);
          expect(gunzipSync(whole).equals(data)).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('handles inputs exactly at and just past the default block size', async () => {
    for (const size of [0, GZIP_BLOCK_SIZE, GZIP_BLOCK_SIZE + 1, 3 * GZIP_BLOCK_SIZE - 1]) {
      const data = textLike(size, size + 1);
      const gz = await compress([data]);
      expect(gunzipSync(gz).equals(data)).toBe(true);
    }
  });

  it('takes in one huge chunk spanning many blocks without losing order', async () => {
    const data = Buffer.concat([randomBytes(3 * SMALL_BLOCK), textLike(20 * SMALL_BLOCK + 123, 9)]);
    const gz = await compress([data], 'gzip', { blockSize: SMALL_BLOCK, threads: 2 });
    expect(gunzipSync(gz).equals(data)).toBe(true);
  });

  it('is deterministic: same input and options give the same bytes on every run', async () => {
    const data = textLike(3 * GZIP_BLOCK_SIZE + 17, 42);
    const digests = new Set<string>();
    for (const threads of [1, 2, 3, 8]) {
      const gz = await compress(cut(data, [1000, 70000, 900000]), 'gzip', { threads });
      digests.add(createHash('sha256').update(gz).digest('hex'));
    }
    expect(digests.size).toBe(1);
  });

  it('writes a fixed header: no name, mtime 0, OS unknown', async () => {
    const gz = await compress([Buffer.from('hello')]);
    expect([...gz.subarray(0, 10)]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    const fast = await compress([Buffer.from('hello')], 'gzip', { level: 1 });
    expect(fast[8]).toBe(4);
  });

  it('stays within a fraction of a percent of serial gzip on compressible data', async () => {
    const data = textLike(4 * GZIP_BLOCK_SIZE, 7);
    const parallel = await compress([data], 'gzip', { level: 6 });
    const serial = gzipSync(data, { level: 6 });
    expect(parallel.length).toBeLessThan(serial.length * 1.01);
  });

  it.skipIf(!hasTool('gzip'))('produces output that `gzip -t` and `gzip -d` accept', async () => {
    const data = Buffer.concat([textLike(GZIP_BLOCK_SIZE * 2 + 5, 3), randomBytes(100_000)]);
    const gz = await compress([data]);
    execFileSync('gzip', ['-t'], { input: gz });
    expect(execFileSync('gzip', ['-dc'], { input: gz, maxBuffer: 64 << 20 }).equals(data)).toBe(true);
  });

  it.skipIf(!hasTool('pigz'))('produces output that `pigz -d` accepts', async () => {
    const data = textLike(GZIP_BLOCK_SIZE * 2 + 5, 5);
    const gz = await compress([data]);
    expect(execFileSync('pigz', ['-dc'], { input: gz, maxBuffer: 64 << 20 }).equals(data)).toBe(true);
  });

  it('rejects bad options with a specific error', () => {
    expect(() => createCompressor('gzip', { level: 10 })).toThrow(/gzip level must be an integer from 0 to 9/);
    expect(() => createCompressor('gzip', { level: 2.5 })).toThrow(RangeError);
    expect(() => createCompressor('gzip', { threads: 0 })).toThrow(/threads must be a positive integer/);
    expect(() => createCompressor('gzip', { blockSize: 1024 })).toThrow(/blockSize must be an integer >= 32768/);
    expect(() => createCompressor('lz4' as Compression)).toThrow(UnsupportedCompressionError);
  });

  it('uses a gzip default level inside gzip range', () => {
    expect(DEFAULT_GZIP_LEVEL).toBeGreaterThanOrEqual(1);
    expect(DEFAULT_GZIP_LEVEL).toBeLessThanOrEqual(9);
  });

  it('surfaces a corrupt stream as an error when decompressing', async () => {
    const gz = await compress([textLike(100_000, 1)]);
    gz[gz.length - 6]! ^= 0xff; // damage the CRC
    await expect(collect(Readable.from([gz]), createDecompressor('gzip'))).rejects.toThrow();
  });
});

describe('none and zstd', () => {
  it('passes data through unchanged for none', async () => {
    const data = randomBytes(1000);
    expect((await compress([data], 'none')).equals(data)).toBe(true);
    expect((await collect(Readable.from([data]), createDecompressor('none'))).equals(data)).toBe(true);
  });

  it.skipIf(zstdAvailable())('refuses zstd naming the Node version it needs (this Node has no zstd)', () => {
    expect(() => createCompressor('zstd')).toThrow(UnsupportedCompressionError);
    expect(() => createCompressor('zstd')).toThrow(/Node >= 22\.15\.0/);
    expect(() => createDecompressor('zstd')).toThrow(new RegExp(process.versions.node.replace(/\./g, '\\.')));
  });

  it.skipIf(!zstdAvailable())('round-trips zstd (this Node has zstd)', async () => {
    const data = textLike(300_000, 3);
    const zst = await compress([data], 'zstd');
    expect((await collect(Readable.from([zst]), createDecompressor('zstd'))).equals(data)).toBe(true);
  });
});

describe('crc32 fallback for Node releases without zlib.crc32', () => {
  it('matches node:zlib, also when continued across chunks', async () => {
    const { crc32Fallback } = await import('../../src/layer/compress.js');
    const { crc32 } = await import('node:zlib');
    const data = randomBytes(10_000);
    expect(crc32Fallback(data, 0)).toBe(crc32(data));
    const first = crc32Fallback(data.subarray(0, 3333), 0);
    expect(crc32Fallback(data.subarray(3333), first)).toBe(crc32(data));
    expect(crc32Fallback(new Uint8Array(0), 0)).toBe(0);
  });
});
