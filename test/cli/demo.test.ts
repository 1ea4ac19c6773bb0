/**
 * `strata demo`: the sample app as an image, saved as a docker archive in
 * the current directory; the same result on every run; readable by OCI
 * tools straight from the store root.
 */
import { spawnSync } from 'node:child_process';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_REF, planDemo, runDemo, sampleAppDir } from '../../src/cli/commands/demo.js';
import { Strata } from '../../src/strata.js';
import { readTar } from '../../src/tar/read.js';
import { REPO, strata, toolAvailable, workspace } from './helpers.js';

let ws: Awaited<ReturnType<typeof workspace>>;

beforeAll(async () => {
  ws = await workspace('strata-demo-');
});

afterAll(async () => {
  await ws.cleanup();
});

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks);
}

interface InspectDoc {
  Id: string;
  RepoTags: string[];
  Config: { WorkingDir: string; Cmd: string[]; Env: string[]; ExposedPorts: Record<string, object>; Labels: Record<string, string> };
  RootFS: { Layers: string[] };
}

describe('strata demo', () => {
  it('makes the sample app image, saves it to ./strata-demo.tar, and changes nothing when run again', async () => {
    const first = await strata(['--root', ws.root, 'demo'], { cwd: ws.dir });
    expect(first).toMatchObject({ code: 0, stderr: '' });
    const archive = join(ws.dir, 'strata-demo.tar');
    const id = /image ID: +(sha256:[a-f0-9]{64})/.exec(first.stdout)?.[1];
    expect(id).toBeDefined();
    expect(first.stdout).toContain(`Made ${DEMO_REF}`);
    expect(first.stdout).toMatch(/^ {4}sha256:[a-f0-9]{64} {2}\S+ gzip, \S+ as tar \(DiffID sha256:[a-f0-9]{64}\)$/m);
    expect(first.stdout).toContain(`store:     ${ws.root}`);
    expect(first.stdout).toContain(`Saved it to ${archive}`);
    expect(first.stdout).toContain(`docker load -i ${archive}`);
    expect(first.stdout).toContain(`skopeo inspect oci:${ws.root}:${DEMO_REF}`);
    expect(first.stdout).toContain(`strata --root ${ws.root} images`);
    const bytes = await readFile(archive);

    const second = await strata(['--root', ws.root, 'demo'], { cwd: ws.dir });
    expect(second).toMatchObject({ code: 0, stderr: '' });
    expect(second.stdout).toContain('(unchanged since the last run)');
    expect(second.stdout).toContain(`image ID:  ${id}`);
    expect((await readFile(archive)).equals(bytes)).toBe(true);
    expect((await strata(['--root', ws.root, 'images', '-q', '--no-trunc'])).stdout).toBe(`${id}\n`);

    // What the Dockerfile describes: files under WORKDIR, .dockerignore honoured, metadata from its instructions.
    const [doc] = JSON.parse((await strata(['--root', ws.root, 'inspect', DEMO_REF])).stdout) as InspectDoc[];
    expect(doc!.RepoTags).toEqual([DEMO_REF]);
    expect(doc!.Config).toMatchObject({
      WorkingDir: '/app',
      Cmd: ['python3', 'app.py'],
      Env: ['APP_HOME=/app', 'PORT=8000'],
      ExposedPorts: { '8000/tcp': {} },
      Labels: { 'org.opencontainers.image.title': 'sample-app' },
    });
    const layer = await strata(['--root', ws.root, 'layer', 'export', doc!.RootFS.Layers[0]!]);
    const entries: string[] = [];
    for await (const entry of readTar(Readable.from([layer.bytes]))) {
      entries.push(`${entry.header.path} ${entry.header.uid}:${entry.header.gid}`);
      entry.body.resume();
    }
    expect(entries).toEqual([
      'app 0:0',
      'app/app.py 0:0',
      'app/requirements.txt 0:0',
      'app/static 0:0',
      'app/static/css 0:0',
      'app/static/css/site.css 0:0',
      'app/static/index.html 0:0',
    ]);

    // The archive loads elsewhere with its name.
    expect(await strata(['--root', join(ws.dir, 'other'), 'load', '-i', archive])).toMatchObject({ code: 0, stdout: `Loaded image: ${DEMO_REF}\n` });
  });

  it.skipIf(!toolAvailable('skopeo'))('leaves the store root readable by skopeo under the demo name (needs skopeo)', async () => {
    const root = join(ws.dir, 'skopeo-root');
    expect((await strata(['--root', root, 'demo', '-o', join(ws.dir, 'skopeo.tar')], { cwd: ws.dir })).code).toBe(0);
    const result = spawnSync('skopeo', ['inspect', `oci:${root}:${DEMO_REF}`], { encoding: 'utf8' });
    expect(result.stderr).toBe('');
    expect((JSON.parse(result.stdout) as { Layers: string[] }).Layers).toHaveLength(1);
  });

  it('finds the sample app beside the package, not in the current directory', () => {
    expect(sampleAppDir()).toBe(join(REPO, 'testdata', 'sample-app'));
  });

  it('replaces its previous image when the sample changes, and honours SOURCE_DATE_EPOCH', async () => {
    const context = join(ws.dir, 'context');
    await cp(sampleAppDir(), context, { recursive: true });
    const strataLib = await Strata.open({ root: join(ws.dir, 'replace-root') });
    const archive = join(ws.dir, 'replace.tar');
    const env = { SOURCE_DATE_EPOCH: '1700000000' };
    const first = await runDemo(strataLib, context, archive, env);
    expect((await strataLib.inspect(DEMO_REF)).Created).toBe('2023-11-14T22:13:20Z');

    await writeFile(join(context, 'app.py'), '# changed\n', { flag: 'a' });
    const second = await runDemo(strataLib, context, archive, env);
    expect(second.id).not.toBe(first.id);
    expect(second.replaced).toBe(first.id);
    expect((await strataLib.list()).map((i) => i.id)).toEqual([second.id]);
    expect(await strataLib.content.has(first.layers[0]!.digest as `sha256:${string}`)).toBe(false);
    expect((await strataLib.fsck()).ok).toBe(true);
    // The layer is reproducible: the same context and epoch give the same digests.
    const again = await runDemo(strataLib, context, archive, env);
    expect(again).toMatchObject({ id: second.id, unchanged: true });
    expect((await collect(strataLib.exportLayer(again.layers[0]!.diffId))).length).toBe(again.layers[0]!.uncompressedSize);
  });

  it('refuses Dockerfile steps it cannot carry out, naming the line', async () => {
    const context = join(ws.dir, 'run-context');
    await cp(sampleAppDir(), context, { recursive: true });
    await writeFile(join(context, 'Dockerfile'), 'FROM scratch\nCOPY app.py /\nRUN echo hi\n');
    await expect(planDemo(context)).rejects.toThrow(/Dockerfile line 3: RUN echo hi: RUN is not supported/);
    await writeFile(join(context, 'Dockerfile'), 'FROM busybox\n');
    await expect(planDemo(context)).rejects.toThrow(/only FROM scratch is supported/);
    await writeFile(join(context, 'Dockerfile'), 'FROM scratch\nCOPY secret.txt /\n');
    await expect(planDemo(context)).rejects.toThrow(/COPY secret.txt: excluded by/);
  });
});
