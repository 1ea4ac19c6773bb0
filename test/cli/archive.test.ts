/**
 * The archive commands of the `strata` binary: import (directory, file,
 * stdin), save (file, stdout, and docker's refusal to write to a
 * terminal), load (file, directory, stdin), layer export.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTar } from '../../src/tar/read.js';
import { tarFromTree } from '../../src/tar/write.js';
import { CLI, makeTree, scriptAvailable, strata, workspace } from './helpers.js';

let ws: Awaited<ReturnType<typeof workspace>>;
let tree: string;
let treeTar: Buffer;

const sha256 = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks);
}

async function tarNames(tar: Buffer): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of readTar(Readable.from([tar]))) {
    names.push(entry.header.path);
    entry.body.resume();
  }
  return names;
}

beforeAll(async () => {
  ws = await workspace();
  tree = await makeTree(ws.dir, 'tree');
  treeTar = await collect(tarFromTree(tree));
});

afterAll(async () => {
  await ws.cleanup();
});

describe('strata import', () => {
  it('imports a directory, a tar file, a gzip file and stdin, printing the image ID', async () => {
    const root = join(ws.dir, 'import-root');
    const run = (args: string[], input?: Buffer) => strata(['--root', root, ...args], input ? { input } : {});
    const fromDir = await run(['import', tree, 'imp/dir:1']);
    expect(fromDir).toMatchObject({ code: 0, stderr: '', stdout: expect.stringMatching(/^sha256:[a-f0-9]{64}\n$/) });

    await writeFile(join(ws.dir, 'rootfs.tar'), treeTar);
    await writeFile(join(ws.dir, 'rootfs.tar.gz'), gzipSync(treeTar));
    const fromFile = await run(['import', join(ws.dir, 'rootfs.tar'), 'imp/file:1']);
    const fromGzip = await run(['import', join(ws.dir, 'rootfs.tar.gz'), 'imp/gzip:1']);
    const fromStdin = await run(['import', '-c', 'ENV A=1', '-c', 'CMD ["sh"]', '-m', 'from a pipe', '-', 'imp/stdin:1'], treeTar);
    for (const result of [fromFile, fromGzip, fromStdin]) expect(result).toMatchObject({ code: 0, stderr: '' });

    const docs = JSON.parse((await run(['inspect', 'imp/file:1', 'imp/gzip:1', 'imp/stdin:1'])).stdout) as {
      Id: string;
      Comment: string;
      Config: { Env: string[] | null; Cmd: string[] | null };
      RootFS: { Layers: string[] };
    }[];
    // A tarball keeps its bytes, whatever its compression: the DiffID is the tar's hash.
    for (const doc of docs) expect(doc.RootFS.Layers).toEqual([sha256(treeTar)]);
    expect(docs.map((d) => d.Id)).toEqual([fromFile.stdout.trim(), fromGzip.stdout.trim(), fromStdin.stdout.trim()]);
    expect(docs[2]).toMatchObject({ Comment: 'from a pipe', Config: { Env: ['A=1'], Cmd: ['sh'] } });
    expect(docs[0]!.Comment).toBe(`Imported from ${join(ws.dir, 'rootfs.tar')}`);
  });

  it('fails clearly on a missing file, a URL, a bad change and a non-tar', async () => {
    const run = (...args: string[]) => strata(['--root', join(ws.dir, 'import-fail-root'), ...args]);
    expect(await run('import', join(ws.dir, 'missing.tar'))).toMatchObject({
      code: 1,
      stdout: '',
      stderr: `strata: open ${join(ws.dir, 'missing.tar')}: no such file or directory\n`,
    });
    expect(await run('import', 'https://example.com/x.tar')).toMatchObject({ code: 1, stderr: expect.stringContaining('importing from a URL is not supported') });
    // Docker's own wording for an instruction --change does not take.
    expect(await run('import', '-c', 'FROM busybox', tree)).toMatchObject({ code: 1, stderr: 'strata: from is not a valid change command\n' });
    await writeFile(join(ws.dir, 'not-a-tar'), 'just text, not an archive '.repeat(40));
    expect(await run('import', join(ws.dir, 'not-a-tar'))).toMatchObject({ code: 1, stderr: expect.stringMatching(/^strata: .*not a tar archive.*\n$/) });
    expect((await run('images', '-q')).stdout).toBe('');
  });
});

describe('strata save and load', () => {
  let root: string;
  let id: string;
  const run = (args: string[], input?: Buffer) => strata(['--root', root, ...args], input ? { input } : {});

  beforeAll(async () => {
    root = join(ws.dir, 'save-root');
    id = (await run(['import', tree, 'save/me:1'])).stdout.trim();
    expect(await run(['tag', 'save/me:1', 'save/me:latest'])).toMatchObject({ code: 0 });
  });

  it('streams a docker archive to stdout that load reads from stdin', async () => {
    const saved = await run(['save', 'save/me']);
    expect(saved).toMatchObject({ code: 0, stderr: '' });
    const names = await tarNames(saved.bytes);
    expect(names).toEqual(expect.arrayContaining(['index.json', 'manifest.json', 'oci-layout', 'repositories', `blobs/sha256/${id.slice(7)}`]));
    const [entry] = JSON.parse((await readTarFile(saved.bytes, 'manifest.json')).toString()) as { RepoTags: string[] }[];
    // A bare name is its latest tag, and only that tag.
    expect(entry!.RepoTags).toEqual(['save/me:latest']);

    const other = join(ws.dir, 'load-stdin-root');
    const loaded = await strata(['--root', other, 'load'], { input: saved.bytes });
    expect(loaded).toMatchObject({ code: 0, stdout: 'Loaded image: save/me:latest\n', stderr: '' });
    expect((await strata(['--root', other, 'images', '-q', '--no-trunc'])).stdout).toBe(`${id}\n`);
  });

  it('writes -o files atomically, in docker or oci format, and loads them with -i', async () => {
    const file = join(ws.dir, 'both.tar');
    expect(await run(['save', '-o', file, 'save/me:1', 'save/me:latest', id])).toMatchObject({ code: 0, stdout: '', stderr: '' });
    const oci = join(ws.dir, 'oci.tar');
    expect(await run(['save', '--format', 'oci', '-o', oci, id.slice(7, 19)])).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect(await tarNames(await readFile(oci))).not.toContain('manifest.json');
    expect((await readdir(ws.dir)).filter((n) => n.startsWith('.tmp-'))).toEqual([]);

    const other = join(ws.dir, 'load-file-root');
    expect(await strata(['--root', other, 'load', '-i', file])).toMatchObject({
      code: 0,
      stdout: 'Loaded image: save/me:1\nLoaded image: save/me:latest\n',
    });
    const third = join(ws.dir, 'load-oci-root');
    // Saved by ID: no names, so docker's "Loaded image ID" line.
    expect(await strata(['--root', third, 'load', '-q', '-i', oci])).toMatchObject({ code: 0, stdout: `Loaded image ID: ${id}\n`, stderr: '' });

    // An extracted OCI layout directory loads too.
    const layout = join(ws.dir, 'layout');
    await mkdir(layout);
    expect(spawnSync('tar', ['-xf', oci, '-C', layout]).status).toBe(0);
    expect(await strata(['--root', join(ws.dir, 'load-dir-root'), 'load', '-i', layout])).toMatchObject({ code: 0, stdout: `Loaded image ID: ${id}\n` });
  });

  it('fails without writing anything when an image is missing or the format is unknown', async () => {
    const file = join(ws.dir, 'never.tar');
    expect(await run(['save', '-o', file, 'save/me:1', 'foo'])).toMatchObject({ code: 1, stdout: '', stderr: 'strata: No such image: foo:latest\n' });
    expect(existsSync(file)).toBe(false);
    expect(await run(['save', 'foo'])).toMatchObject({ code: 1, stdout: '', stderr: 'strata: No such image: foo:latest\n' });
    expect(await run(['save', '--format', 'zip', 'save/me:1'])).toMatchObject({ code: 1, stdout: '', stderr: 'strata: unsupported --format "zip": use docker or oci\n' });
    expect(await run(['load'], Buffer.from('this is not an archive'))).toMatchObject({ code: 1, stdout: '' });
    expect(await run(['load', '-i', join(ws.dir, 'nope.tar')])).toMatchObject({ code: 1, stderr: `strata: open ${join(ws.dir, 'nope.tar')}: no such file or directory\n` });
  });

  it.skipIf(!scriptAvailable())('refuses to write an archive to a terminal, like docker (needs util-linux script)', () => {
    const command = `${process.execPath} ${CLI} --root ${root} save save/me:1`;
    const result = spawnSync('script', ['-qec', command, '/dev/null'], { encoding: 'utf8', env: { PATH: process.env.PATH, TERM: 'dumb' } });
    expect(result.status).toBe(1);
    expect(result.stdout.replace(/\r/g, '')).toContain('strata: cowardly refusing to save to a terminal. Use the -o flag or redirect\n');
  });
});

describe('strata layer export', () => {
  it('writes a layer by DiffID, blob digest or ChainID, plain or gzip, to stdout or a file', async () => {
    const root = join(ws.dir, 'layer-root');
    const run = (...args: string[]) => strata(['--root', root, ...args]);
    const id = (await run('import', tree, 'layer/me:1')).stdout.trim();
    const diffId = (JSON.parse((await run('inspect', id)).stdout) as { RootFS: { Layers: string[] } }[])[0]!.RootFS.Layers[0]!;

    const plain = await run('layer', 'export', diffId);
    expect(plain).toMatchObject({ code: 0, stderr: '' });
    expect(sha256(plain.bytes)).toBe(diffId);
    expect((await tarNames(plain.bytes)).sort()).toEqual(['bin', 'bin/hello', 'bin/hi', 'etc', 'etc/hostname']);

    const file = join(ws.dir, 'layer.tar.gz');
    expect(await run('layer', 'export', '--compression', 'gzip', '-o', file, diffId)).toMatchObject({ code: 0, stdout: '', stderr: '' });
    const gz = await readFile(file);
    expect(sha256(gunzipSync(gz))).toBe(diffId);
    // The gzip blob as stored, so exporting it by its own digest gives the same bytes.
    expect(sha256((await run('layer', 'export', '--compression', 'gzip', sha256(gz))).bytes)).toBe(sha256(gz));

    expect(await run('layer', 'export', `sha256:${'0'.repeat(64)}`)).toMatchObject({
      code: 1,
      stdout: '',
      stderr: `strata: no layer blob, DiffID or ChainID sha256:${'0'.repeat(64)} in the store\n`,
    });
    expect(await run('layer', 'export', 'latest')).toMatchObject({ code: 1, stderr: expect.stringMatching(/^strata: invalid digest "latest"/) });
    expect(await run('layer', 'export', '--compression', 'lz4', diffId)).toMatchObject({ code: 1, stderr: 'strata: unsupported --compression "lz4": use none, gzip or zstd\n' });
    const missingOut = join(ws.dir, 'no-layer.tar');
    await run('layer', 'export', '-o', missingOut, `sha256:${'1'.repeat(64)}`);
    expect(existsSync(missingOut)).toBe(false);
  });
});

async function readTarFile(tar: Buffer, name: string): Promise<Buffer> {
  for await (const entry of readTar(Readable.from([tar]))) {
    if (entry.header.path === name) return collect(entry.body);
    entry.body.resume();
  }
  throw new Error(`${name} is not in the archive`);
}
