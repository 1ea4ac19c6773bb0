/**
 * `strata demo`: the sample app built by the real build engine, saved as a
 * docker archive in the current directory; the same result on every run,
 * as root or not; readable by OCI tools straight from the store root.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, cp, mkdir, readdir, readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contextEpoch, DEMO_REF, runDemo, sampleAppDir } from '../../src/cli/commands/demo.js';
import { Strata } from '../../src/strata.js';
import { readTar } from '../../src/tar/read.js';
import { REPO, strata, strataAsNobody, toolAvailable, workspace, type RunResult } from './helpers.js';

let ws: Awaited<ReturnType<typeof workspace>>;

beforeAll(async () => {
  ws = await workspace('strata-demo-');
});

afterAll(async () => {
  await ws.cleanup();
});

interface InspectDoc {
  Id: string;
  Created: string;
  RepoTags: string[];
  Config: { WorkingDir: string; Cmd: string[]; Env: string[]; ExposedPorts: Record<string, object>; Labels: Record<string, string> };
  RootFS: { Layers: string[] };
}

/** `path uid:gid` of every entry of a layer tar. */
async function layerEntries(tar: Buffer): Promise<string[]> {
  const entries: string[] = [];
  for await (const entry of readTar(Readable.from([tar]))) {
    entries.push(`${entry.header.path} ${entry.header.uid}:${entry.header.gid}`);
    entry.body.resume();
  }
  return entries;
}

const STEP_RE = /^ {4}(\d)\/9 {2}(.+?) {2,}(base|cached|built)$/gm;
/** A layer line: blob digest, then its size as a plain tar, or compressed and as a tar. */
const LAYER_RE = /^ {9}layer sha256:[a-f0-9]{64} {2}(\S+ tar|\S+ (gzip|zstd), \S+ as tar)$/gm;

/** The step lines of the demo's report, as `instruction status`. */
function steps(stdout: string): string[] {
  return [...stdout.matchAll(STEP_RE)].map((m) => `${m[2]!.trim()} ${m[3]}`);
}

const BUILT_STEPS = [
  'FROM scratch base',
  'LABEL org.opencontainers.image.title="sample-app" org.o… built',
  'ENV APP_HOME=/app PORT=8000 built',
  'WORKDIR /app built',
  'COPY requirements.txt ./ built',
  'COPY app.py ./ built',
  'COPY static/ ./static/ built',
  'EXPOSE 8000 built',
  'CMD ["python3", "app.py"] built',
];

describe('strata demo', () => {
  it('builds the sample app, saves it to ./strata-demo.tar, says what and where, and changes nothing when run again', async () => {
    const first = await strata(['--root', ws.root, 'demo'], { cwd: ws.dir });
    expect(first).toMatchObject({ code: 0, stderr: '' });
    const archive = join(ws.dir, 'strata-demo.tar');
    const id = /image ID: +(sha256:[a-f0-9]{64})/.exec(first.stdout)?.[1];
    expect(id).toBeDefined();
    expect(first.stdout).toContain(`Built ${DEMO_REF} from ${join(REPO, 'testdata', 'sample-app')}/Dockerfile\n`);
    expect(steps(first.stdout)).toEqual(BUILT_STEPS);
    // WORKDIR and the three COPYs each add a layer.
    expect(first.stdout.match(LAYER_RE)).toHaveLength(4);
    expect(first.stdout).toContain(`store:     ${ws.root}`);
    expect(first.stdout).toContain(`Saved it to ${archive} (`);
    expect(first.stdout).toContain(`docker load -i ${archive}`);
    expect(first.stdout).toContain(`skopeo inspect oci:${ws.root}:${DEMO_REF}`);
    expect(first.stdout).toContain(`strata --root ${ws.root} images`);
    const epoch = Number(/SOURCE_DATE_EPOCH=(\d+)/.exec(first.stdout)?.[1]);
    expect(epoch).toBe(await contextEpoch(sampleAppDir()));
    const bytes = await readFile(archive);

    const second = await strata(['--root', ws.root, 'demo'], { cwd: ws.dir });
    expect(second).toMatchObject({ code: 0, stderr: '' });
    expect(second.stdout).toContain('(unchanged since the last run)');
    expect(second.stdout).toContain(`image ID:  ${id}`);
    expect(steps(second.stdout)).toEqual(BUILT_STEPS.map((s) => s.replace(/ built$/, ' cached')));
    expect((await readFile(archive)).equals(bytes)).toBe(true);
    expect((await strata(['--root', ws.root, 'images', '-q', '--no-trunc'])).stdout).toBe(`${id}\n`);

    // What the Dockerfile describes: one layer per step that changes files, .dockerignore honoured, metadata from its instructions.
    const [doc] = JSON.parse((await strata(['--root', ws.root, 'inspect', DEMO_REF])).stdout) as InspectDoc[];
    expect(doc!.RepoTags).toEqual([DEMO_REF]);
    expect(Date.parse(doc!.Created) / 1000).toBe(epoch);
    expect(doc!.Config).toMatchObject({
      WorkingDir: '/app',
      Cmd: ['python3', 'app.py'],
      // PATH as Docker's builder sets it for every image, FROM scratch included.
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'APP_HOME=/app', 'PORT=8000'],
      ExposedPorts: { '8000/tcp': {} },
      Labels: { 'org.opencontainers.image.title': 'sample-app' },
    });
    const layers = [];
    for (const diffId of doc!.RootFS.Layers) layers.push(await layerEntries((await strata(['--root', ws.root, 'layer', 'export', diffId])).bytes));
    expect(layers).toEqual([
      ['app 0:0'],
      ['app 0:0', 'app/requirements.txt 0:0'],
      ['app 0:0', 'app/app.py 0:0'],
      ['app 0:0', 'app/static 0:0', 'app/static/css 0:0', 'app/static/css/site.css 0:0', 'app/static/index.html 0:0'],
    ]);

    // The engine's own `strata build` with the same date makes the same image in another store.
    const other = join(ws.dir, 'other');
    const rebuilt = await strata(['--root', other, 'build', '-q', '--source-date-epoch', String(epoch), sampleAppDir()]);
    expect(rebuilt).toMatchObject({ code: 0, stdout: `${id}\n` });
    // And the archive loads elsewhere with its name.
    const loadRoot = join(ws.dir, 'loaded');
    expect(await strata(['--root', loadRoot, 'load', '-i', archive])).toMatchObject({ code: 0, stdout: `Loaded image: ${DEMO_REF}\n` });
    expect((await strata(['--root', loadRoot, 'images', '-q', '--no-trunc'])).stdout).toBe(`${id}\n`);
  });

  it.skipIf(!toolAvailable('skopeo'))('leaves the store root readable by skopeo under the demo name (needs skopeo)', async () => {
    const root = join(ws.dir, 'skopeo-root');
    expect((await strata(['--root', root, 'demo', '-o', join(ws.dir, 'skopeo.tar')], { cwd: ws.dir })).code).toBe(0);
    const result = spawnSync('skopeo', ['inspect', `oci:${root}:${DEMO_REF}`], { encoding: 'utf8' });
    expect(result.stderr).toBe('');
    expect((JSON.parse(result.stdout) as { Layers: string[] }).Layers).toHaveLength(4);
  });

  it('finds the sample app beside the package, not in the current directory', () => {
    expect(sampleAppDir()).toBe(join(REPO, 'testdata', 'sample-app'));
  });

  it('dates the build by the newest file it reads, ignoring what .dockerignore excludes', async () => {
    const context = join(ws.dir, 'epoch-context');
    await cp(sampleAppDir(), context, { recursive: true });
    for (const file of await readdir(context, { recursive: true })) await utimes(join(context, file), 1_600_000_000, 1_600_000_000);
    // Excluded files do not count, however new.
    await utimes(join(context, 'secret.txt'), 1_700_000_000, 1_700_000_000);
    expect(await contextEpoch(context)).toBe(1_600_000_000);
    await utimes(join(context, 'static', 'css', 'site.css'), 1_650_000_000.9, 1_650_000_000.9);
    expect(await contextEpoch(context)).toBe(1_650_000_000);

    const lib = await Strata.open({ root: join(ws.dir, 'epoch-root') });
    const result = await runDemo(lib, context, join(ws.dir, 'epoch.tar'), {});
    expect(result.sourceDateEpoch).toBe(1_650_000_000);
    expect((await lib.inspect(DEMO_REF)).Created).toBe('2022-04-15T05:20:00Z');
  });

  it('replaces its previous image when the sample changes, keeps the build cache, and honours SOURCE_DATE_EPOCH', async () => {
    const context = join(ws.dir, 'context');
    await cp(sampleAppDir(), context, { recursive: true });
    const lib = await Strata.open({ root: join(ws.dir, 'replace-root') });
    const archive = join(ws.dir, 'replace.tar');
    const env = { SOURCE_DATE_EPOCH: '1700000000' };
    const first = await runDemo(lib, context, archive, env);
    expect(first).toMatchObject({ sourceDateEpoch: 1_700_000_000, unchanged: false });
    expect((await lib.inspect(DEMO_REF)).Created).toBe('2023-11-14T22:13:20Z');
    expect(first.steps.map((s) => s.cached)).toEqual([true, false, false, false, false, false, false, false, false]);
    expect(first.steps.filter((s) => s.layer).map((s) => s.layer!.diffId)).toEqual(first.layers.map((l) => l.diffId));

    await writeFile(join(context, 'app.py'), '# changed\n', { flag: 'a' });
    const second = await runDemo(lib, context, archive, env);
    expect(second.id).not.toBe(first.id);
    expect(second.replaced).toBe(first.id);
    // Only the app.py step and what follows it ran again.
    expect(second.steps.map((s) => s.cached)).toEqual([true, true, true, true, true, false, false, false, false]);
    expect((await lib.list()).map((i) => i.id)).toEqual([second.id]);
    // The old app.py layer is the build cache's now: gc keeps it, so going back is all cache hits.
    const oldAppLayer = first.steps[5]!.layer!;
    await lib.gc();
    expect(await lib.content.has(oldAppLayer.digest)).toBe(true);
    expect((await lib.fsck()).ok).toBe(true);

    const again = await runDemo(lib, context, archive, env);
    expect(again).toMatchObject({ id: second.id, unchanged: true });
    expect(again.steps.every((s) => s.cached)).toBe(true);
  });

  it.skipIf(process.geteuid?.() !== 0 || !existsSync('/usr/bin/setpriv'))(
    'works as an unprivileged user, with the same archive bytes on every run (needs root to switch to nobody, and setpriv)',
    async () => {
      const home = join(ws.dir, 'nobody');
      // The workspace is private (0700); nobody must reach its own directory in it.
      await chmod(ws.dir, 0o711);
      await mkdir(home);
      await chown(home, 65534, 65534);
      const asNobody = (args: string[]): Promise<RunResult> => strataAsNobody(home, args);
      const root = join(home, 'store');
      const first = await asNobody(['--root', root, 'demo']);
      expect(first).toMatchObject({ code: 0, stderr: '' });
      expect(steps(first.stdout)).toEqual(BUILT_STEPS);
      const archive = join(home, 'strata-demo.tar');
      const bytes = await readFile(archive);
      const second = await asNobody(['--root', root, 'demo']);
      expect(second).toMatchObject({ code: 0, stderr: '' });
      expect(second.stdout).toContain('(unchanged since the last run)');
      expect((await readFile(archive)).equals(bytes)).toBe(true);
      expect((await asNobody(['--root', root, 'fsck'])).code).toBe(0);
      // What nobody saved, root can load.
      expect(await strata(['--root', join(ws.dir, 'from-nobody'), 'load', '-i', archive])).toMatchObject({ code: 0, stdout: `Loaded image: ${DEMO_REF}\n` });
    },
  );
});
