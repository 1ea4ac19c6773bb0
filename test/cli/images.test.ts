/**
 * The image commands of the `strata` binary: images, inspect, history, tag,
 * rmi, gc, fsck. Output shapes follow the docker CLI (tables, 4-space JSON,
 * `Untagged:`/`Deleted:` lines); failures are one `strata: …` line on
 * stderr and status 1.
 */
import { createHash } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTree, strata, workspace } from './helpers.js';

let ws: Awaited<ReturnType<typeof workspace>>;
let appId: string;
let toolId: string;

/** `strata --root ROOT …` */
const run = (...args: string[]) => strata(['--root', ws.root, ...args]);

beforeAll(async () => {
  ws = await workspace();
  const app = await run('import', '-c', 'CMD ["/bin/hello"]', '-m', 'the app', await makeTree(ws.dir, 'app'), 'example/app:1.0');
  expect(app).toMatchObject({ code: 0, stderr: '' });
  appId = app.stdout.trim();
  const tool = await run('import', await makeTree(ws.dir, 'tool', { 'usr/bin/tool': 'tool\n' }), 'example/tool');
  expect(tool).toMatchObject({ code: 0, stderr: '' });
  toolId = tool.stdout.trim();
});

afterAll(async () => {
  await ws.cleanup();
});

describe('strata images', () => {
  it('lists images as docker does', async () => {
    const { code, stdout, stderr } = await run('images');
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    const lines = stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^REPOSITORY\s{3,}TAG\s{3,}IMAGE ID\s{3,}CREATED\s{3,}SIZE$/);
    const rows = lines.slice(1).map((line) => line.split(/ {3,}/));
    expect(rows).toHaveLength(2);
    expect(rows).toEqual(
      expect.arrayContaining([
        ['example/app', '1.0', appId.slice(7, 19), expect.stringMatching(/ago$/), expect.stringMatching(/^\d+(\.\d+)?kB$/)],
        ['example/tool', 'latest', toolId.slice(7, 19), expect.stringMatching(/ago$/), expect.stringMatching(/^\d+(\.\d+)?kB$/)],
      ]),
    );
  });

  it('prints only IDs with -q, full IDs with --no-trunc, and filters by repository', async () => {
    expect((await run('images', '-q')).stdout.split('\n').filter(Boolean).sort()).toEqual([appId.slice(7, 19), toolId.slice(7, 19)].sort());
    expect((await run('images', '-q', '--no-trunc')).stdout.split('\n').filter(Boolean).sort()).toEqual([appId, toolId].sort());
    expect((await run('images', '-a', '-q', 'example/tool')).stdout).toBe(`${toolId.slice(7, 19)}\n`);
    expect((await run('images', '-q', 'example/app:2.0')).stdout).toBe('');
    const digests = await run('images', '--digests', 'example/app');
    expect(digests.stdout.split('\n')[0]).toMatch(/^REPOSITORY\s+TAG\s+DIGEST\s+IMAGE ID\s+CREATED\s+SIZE$/);
    expect(digests.stdout.split('\n')[1]).toMatch(/^example\/app\s+1\.0\s+<none>\s+/);
  });
});

describe('strata inspect', () => {
  it('prints a JSON array with 4-space indentation', async () => {
    const { code, stdout, stderr } = await run('inspect', 'example/app:1.0', toolId.slice(7, 15));
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    expect(stdout).toMatch(/^\[\n {4}\{\n {8}"Id": "sha256:/);
    const docs = JSON.parse(stdout) as { Id: string; RepoTags: string[]; Comment: string; Config: { Cmd: string[] | null }; RootFS: { Layers: string[] } }[];
    expect(docs.map((d) => d.Id)).toEqual([appId, toolId]);
    expect(docs[0]).toMatchObject({ RepoTags: ['example/app:1.0'], Comment: 'the app', Config: { Cmd: ['/bin/hello'] } });
    expect(docs[0]!.RootFS.Layers).toHaveLength(1);
  });

  it('prints the images found, then one error line per missing one, and exits 1', async () => {
    const { code, stdout, stderr } = await run('inspect', 'nope', 'example/app:1.0', 'nada:2');
    expect(code).toBe(1);
    expect((JSON.parse(stdout) as { Id: string }[]).map((d) => d.Id)).toEqual([appId]);
    expect(stderr).toBe('strata: No such object: nope\nstrata: No such object: nada:2\n');
    expect(await run('inspect', 'nope')).toEqual({ code: 1, stdout: '[]\n', stderr: 'strata: No such object: nope\n', bytes: Buffer.from('[]\n') });
  });
});

describe('strata history', () => {
  it('prints the table, IDs only with -q, raw values with -H=false', async () => {
    const table = await run('history', 'example/app:1.0');
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^IMAGE\s{3,}CREATED\s{3,}CREATED BY\s{3,}SIZE\s{3,}COMMENT$/);
    expect(lines[1]).toMatch(new RegExp(`^${appId.slice(7, 19)}\\s{3,}.+ ago\\s{3,}\\d+(\\.\\d+)?kB\\s{3,}the app$`));
    expect(lines).toHaveLength(2);

    expect((await run('history', '-q', 'example/app:1.0')).stdout).toBe(`${appId.slice(7, 19)}\n`);
    expect((await run('history', '-q', '--no-trunc', 'example/app:1.0')).stdout).toBe(`${appId}\n`);
    const raw = await run('history', '-H=false', 'example/app:1.0');
    expect(raw.stdout.split('\n')[0]).toMatch(/^IMAGE\s+CREATED AT\s+CREATED BY\s+SIZE\s+COMMENT$/);
    expect(raw.stdout.split('\n')[1]).toMatch(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+\d+\s+the app$/);
    // A bare -H is the flag, not a value swallowing the image name.
    expect((await run('history', '-H', 'example/app:1.0')).code).toBe(0);
  });

  it('fails on an unknown image', async () => {
    expect(await run('history', 'foo')).toMatchObject({ code: 1, stdout: '', stderr: 'strata: No such image: foo:latest\n' });
  });
});

describe('strata tag, rmi and gc', () => {
  it('tags, untags and deletes as docker rmi does, freeing the space', async () => {
    expect(await run('tag', 'example/tool', 'example/tool:2')).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect(await run('tag', 'example/tool', 'Bad:Name')).toMatchObject({ code: 1, stderr: expect.stringMatching(/^strata: invalid reference format.*\n$/) });
    expect(await run('tag', 'no/such', 'x:1')).toMatchObject({ code: 1, stderr: 'strata: No such image: no/such:latest\n' });

    // Two names: removing one only untags.
    expect(await run('rmi', 'example/tool:2')).toMatchObject({ code: 0, stdout: 'Untagged: example/tool:2\n', stderr: '' });
    // By ID the last name goes and the image is deleted; a missing one is reported and the rest still run.
    const rmi = await run('rmi', 'ghost', toolId.slice(7, 19));
    expect(rmi.code).toBe(1);
    expect(rmi.stdout).toBe(`Untagged: example/tool:latest\nDeleted: ${toolId}\n`);
    expect(rmi.stderr).toBe('strata: No such image: ghost:latest\n');
    expect((await run('images', '-q', '--no-trunc')).stdout).toBe(`${appId}\n`);
    // rmi already collected the garbage.
    expect(await run('gc')).toEqual({ code: 0, stdout: 'Total reclaimed space: 0B\n', stderr: '', bytes: Buffer.from('Total reclaimed space: 0B\n') });
  });

  it('gc removes unreferenced blobs and reports the space', async () => {
    const data = 'a blob no image references\n';
    const hex = createHash('sha256').update(data).digest('hex');
    await writeFile(join(ws.root, 'blobs', 'sha256', hex), data);
    expect(await run('gc')).toMatchObject({
      code: 0,
      stdout: `Deleted Blobs:\ndeleted: sha256:${hex}\n\nTotal reclaimed space: ${data.length}B\n`,
      stderr: '',
    });
    expect((await run('images', '-q', '--no-trunc')).stdout).toBe(`${appId}\n`);
  });
});

describe('strata fsck', () => {
  it('says ok for a clean store and names every fault otherwise', async () => {
    const clean = await run('fsck');
    expect(clean).toMatchObject({ code: 0, stderr: '' });
    expect(clean.stdout).toMatch(/^ok: checked \d+ blobs \(.+\), \d+ manifests?, \d+ configs?, \d+ layer records?, \d+ DiffIDs?\n$/);
    expect((await run('fsck', '--quick')).stdout).not.toContain('DiffID');

    const victim = await workspace('strata-cli-fsck-');
    try {
      const v = (...args: string[]) => strata(['--root', victim.root, ...args]);
      expect((await v('import', await makeTree(victim.dir, 'tree'), 'victim:1')).code).toBe(0);
      const manifest = JSON.parse(await readFile(join(victim.root, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
      const manifestDoc = JSON.parse(await readFile(join(victim.root, 'blobs', 'sha256', manifest.manifests[0]!.digest.slice(7)), 'utf8')) as {
        layers: { digest: string }[];
      };
      const blob = manifestDoc.layers[0]!.digest;
      const blobPath = join(victim.root, 'blobs', 'sha256', blob.slice(7));
      const bytes = await readFile(blobPath);
      bytes[bytes.length - 1] ^= 0xff;
      await chmod(blobPath, 0o644);
      await writeFile(blobPath, bytes);

      const broken = await v('fsck');
      expect(broken.code).toBe(1);
      expect(broken.stdout).toMatch(new RegExp(`^error: corrupt-blob ${blob}: `, 'm'));
      expect(broken.stdout.split('\n').filter(Boolean).every((line) => /^(error|warning): [a-z-]+ \S+: /.test(line))).toBe(true);
      expect(broken.stderr).toMatch(/^strata: fsck found \d+ errors? in .+\n$/);
    } finally {
      await victim.cleanup();
    }
  });
});
