/**
 * `Strata.build` through the package entry point: a Dockerfile and a context
 * in, a tagged image out, every step cached by content; the build cache kept
 * by gc; Dockerfile and step failures as the exported error classes.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BuildError, DockerfileError, Strata, StrataError, type Digest } from '../src/index.js';
import { CLI } from './cli/helpers.js';

let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'strata-api-build-'));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A build context from `files` (path → content). */
async function context(name: string, files: Record<string, string>): Promise<string> {
  const dir = join(work, name);
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(dir, path, '..'), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  return dir;
}

function textSink(): { stream: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk);
      callback();
    },
  });
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
}

const APP = {
  Dockerfile: 'FROM scratch\nENV GREETING=hello\nWORKDIR /app\nCOPY greeting.txt conf/ ./\nCMD ["/app/greeting.txt"]\n',
  'greeting.txt': 'hello\n',
  'conf/app.conf': 'port=8000\n',
  'conf/local.log': 'left out\n',
  '.dockerignore': '**/*.log\n',
};

describe('Strata.build', () => {
  it('builds a tagged image, one layer per file-changing step, and reuses every step the second time', async () => {
    const strata = await Strata.open({ root: join(work, 'root-build') });
    const ctx = await context('ctx-build', APP);
    const progress = textSink();
    const first = await strata.build({ contextDir: ctx, tags: ['api/app:1'], sourceDateEpoch: 1_700_000_000, output: progress.stream });
    expect(first.id).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(first.tags).toEqual(['api/app:1']);
    expect(first.steps.map((s) => [s.instruction, s.cached, s.layer !== undefined])).toEqual([
      ['FROM scratch', true, false],
      ['ENV GREETING=hello', false, false],
      ['WORKDIR /app', false, true],
      ['COPY greeting.txt conf/ ./', false, true],
      ['CMD ["/app/greeting.txt"]', false, false],
    ]);
    expect(progress.text()).toMatch(/^Step 1\/5 : FROM scratch\n/);
    expect(progress.text()).toContain('Successfully tagged api/app:1\n');

    const inspect = await strata.inspect('api/app:1');
    expect(inspect.Id).toBe(first.id);
    expect(inspect.Created).toBe('2023-11-14T22:13:20Z');
    expect(inspect.Config).toMatchObject({ WorkingDir: '/app', Cmd: ['/app/greeting.txt'] });
    expect(inspect.Config.Env).toContain('GREETING=hello');
    expect(inspect.RootFS.Layers).toEqual(first.steps.flatMap((s) => (s.layer ? [s.layer] : [])));
    const files: string[] = [];
    const { readTar } = await import('../src/tar/read.js');
    for await (const entry of readTar(strata.flatten('api/app:1'))) {
      files.push(entry.header.path);
      entry.body.resume();
    }
    expect(files).toEqual(['app', 'app/app.conf', 'app/greeting.txt']);

    const again = await strata.build({ contextDir: ctx, tags: ['api/app:1'], sourceDateEpoch: 1_700_000_000 });
    expect(again.id).toBe(first.id);
    expect(again.steps.every((s) => s.cached)).toBe(true);

    // The same input and date in another, empty store: the same image, byte for byte.
    const other = await Strata.open({ root: join(work, 'root-build-other') });
    const elsewhere = await other.build({ contextDir: ctx, sourceDateEpoch: 1_700_000_000 });
    expect(elsewhere).toMatchObject({ id: first.id, manifestDigest: first.manifestDigest, tags: [] });
  });

  it('keeps cached layers through rmi and gc, so a rebuild is all cache hits', async () => {
    const root = join(work, 'root-cache');
    const strata = await Strata.open({ root });
    const ctx = await context('ctx-cache', APP);
    const built = await strata.build({ contextDir: ctx, tags: ['api/cached:1'], sourceDateEpoch: 0 });
    const image = await strata.images.resolve(built.id);
    const layerBlobs = image.manifest.layers.map((l) => l.digest as Digest);

    const removed = await strata.rmi(['api/cached:1']);
    expect(removed.items[0]).toMatchObject({ deleted: [built.id] });
    // The image's config and manifest go; the layers stay, as build cache.
    expect(removed.gc!.removed).toEqual(expect.arrayContaining([built.id, image.manifestDigest]));
    for (const blob of layerBlobs) expect(await strata.content.has(blob)).toBe(true);
    expect((await strata.fsck()).ok).toBe(true);

    // Opening the facade alone (no build module imported by anyone else) is enough for gc to know the cache.
    const script = `const { Strata } = await import(${JSON.stringify(join(CLI, '..', '..', 'strata.js'))}); const s = await Strata.open({ root: ${JSON.stringify(root)} }); process.stdout.write(JSON.stringify((await s.gc()).removed));`;
    expect(JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }))).toEqual([]);
    for (const blob of layerBlobs) expect(await strata.content.has(blob)).toBe(true);

    const rebuilt = await strata.build({ contextDir: ctx, tags: ['api/cached:1'], sourceDateEpoch: 0 });
    expect(rebuilt.id).toBe(built.id);
    expect(rebuilt.steps.every((s) => s.cached)).toBe(true);
  });

  it('fails with DockerfileError before anything runs, and with BuildError naming the step', async () => {
    const strata = await Strata.open({ root: join(work, 'root-errors') });
    const bad = await context('ctx-bad', { Dockerfile: 'FROM scratch\nCOPY\n' });
    const parse = await strata.build({ contextDir: bad }).catch((err: unknown) => err);
    expect(parse).toBeInstanceOf(DockerfileError);
    expect(parse).toMatchObject({ line: 2, message: expect.stringContaining('COPY requires at least two arguments') });

    const missing = await context('ctx-missing', { Dockerfile: 'FROM scratch\nLABEL a=b\nCOPY nope /x\n' });
    const step = await strata.build({ contextDir: missing, tags: ['never:1'] }).catch((err: unknown) => err);
    expect(step).toBeInstanceOf(BuildError);
    expect(step).toBeInstanceOf(StrataError);
    expect(step).toMatchObject({ code: 'BUILD_FAILED', step: 3, line: 3, instruction: 'COPY nope /x' });
    expect((step as Error).message).toContain('COPY failed: file not found in build context');
    expect(await strata.list()).toEqual([]);
  });
});
