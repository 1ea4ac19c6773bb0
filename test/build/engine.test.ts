/**
 * The build engine: every instruction's effect on the image config and
 * history (as Docker's classic builder records them), multi-stage builds and
 * --target, ONBUILD triggers, the progress output, failures, and RUN (which
 * needs root, an OCI runtime and overlayfs).
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build, BuildError, type BuildOptions } from '../../src/build/engine.js';
import { DockerfileError } from '../../src/build/dockerfile/index.js';
import { newImageConfig, writeImage } from '../../src/image/config.js';
import { parseReference } from '../../src/image/reference.js';
import { makeLayer } from '../../src/layer/make.js';
import { checkRuntimeUsable, findRuntime } from '../../src/runtime/detect.js';
import { overlaySupported } from '../../src/runtime/overlay.js';
import { BUSYBOX_PATH, makeBusyboxRootfs } from '../helpers/busybox.js';
import {
  BASE_ENTRIES,
  builtImage,
  cleanupAll,
  collectOutput,
  layerEntries,
  layerListing,
  makeContext,
  makeImageFromEntries,
  openStore,
  tempDir,
  type TestStore,
} from './engine-helpers.js';

async function runUnavailable(): Promise<string> {
  try {
    await findRuntime(undefined, { purpose: 'build' });
    await checkRuntimeUsable({ purpose: 'build' });
    if (!(await overlaySupported())) return 'overlayfs is not available';
    return '';
  } catch (err) {
    return (err as Error).message;
  }
}
/** Why RUN tests are skipped ('' when they run): they need root, runc or crun, and overlayfs. */
const noRun = await runUnavailable();

let store: TestStore;

beforeAll(async () => {
  store = await openStore();
  await makeImageFromEntries(store, 'base:1', BASE_ENTRIES, { Env: ['PATH=/bin'], Cmd: ['sh'], Labels: { from: 'base' } });
});
afterAll(cleanupAll);

async function buildText(dockerfile: string, opts: Partial<BuildOptions> = {}, files: Record<string, string> = {}) {
  const ctx = await makeContext({ ...files, Dockerfile: dockerfile });
  const out = collectOutput();
  const result = await build(store, { contextDir: ctx, output: out.stream, ...opts });
  const image = await builtImage(store, result.id);
  return { result, image, output: out.text() };
}

describe('metadata instructions', () => {
  it('set the config as Docker does, each with an empty_layer history entry', async () => {
    const { image } = await buildText(
      [
        'FROM base:1',
        'ENV A=1 B="two words"',
        'ENV A=one',
        'LABEL l1=v1 "l 2"="v 2"',
        'EXPOSE 80 443/udp 8000-8001',
        'VOLUME /data ["/v2"]',
        'USER nobody',
        'STOPSIGNAL SIGTERM',
        'HEALTHCHECK --interval=5s --timeout=3s --retries=2 CMD true',
        'ONBUILD RUN echo hi > /onbuilt',
        'SHELL ["/bin/sh", "-ec"]',
        'ENTRYPOINT ["/bin/echo"]',
        'MAINTAINER me <me@x>',
        'ARG X=1',
        'CMD echo shellform',
      ].join('\n'),
    );
    expect(image.config.config).toEqual({
      Env: ['PATH=/bin', 'A=one', 'B=two words'],
      Cmd: ['/bin/sh', '-ec', 'echo shellform'],
      Labels: { from: 'base', l1: 'v1', 'l 2': 'v 2' },
      ExposedPorts: { '80/tcp': {}, '443/udp': {}, '8000/tcp': {}, '8001/tcp': {} },
      // Docker reads the mixed form as two words, brackets kept: [/v2].
      Volumes: { '/data': {}, '[/v2]': {} },
      User: 'nobody',
      StopSignal: 'SIGTERM',
      Healthcheck: { Test: ['CMD-SHELL', 'true'], Interval: 5_000_000_000, Timeout: 3_000_000_000, Retries: 2 },
      OnBuild: ['RUN echo hi > /onbuilt'],
      Shell: ['/bin/sh', '-ec'],
      Entrypoint: ['/bin/echo'],
    });
    expect(image.config.author).toBe('me <me@x>');
    const history = image.config.history!.slice(1);
    expect(history.every((h) => h.empty_layer === true)).toBe(true);
    expect(history.map((h) => h.created_by)).toEqual([
      '/bin/sh -c #(nop)  ENV A=1 B=two words',
      '/bin/sh -c #(nop)  ENV A=one',
      '/bin/sh -c #(nop)  LABEL l1=v1 l 2=v 2',
      '/bin/sh -c #(nop)  EXPOSE 443/udp 80 8000-8001',
      '/bin/sh -c #(nop)  VOLUME [/data [/v2]]',
      '/bin/sh -c #(nop)  USER nobody',
      '/bin/sh -c #(nop)  STOPSIGNAL SIGTERM',
      '/bin/sh -c #(nop)  HEALTHCHECK &{["CMD-SHELL" "true"] "5s" "3s" "0s" "0s" \'\\x02\'}',
      '/bin/sh -c #(nop)  ONBUILD RUN echo hi > /onbuilt',
      '/bin/sh -ec #(nop)  SHELL [/bin/sh -ec]',
      '/bin/sh -ec #(nop)  ENTRYPOINT ["/bin/echo"]',
      '/bin/sh -ec #(nop)  MAINTAINER me <me@x>',
      '/bin/sh -ec #(nop)  ARG X=1',
      '/bin/sh -ec #(nop)  CMD ["/bin/sh" "-ec" "echo shellform"]',
    ]);
    // Entries after MAINTAINER carry the author, like Docker's.
    expect(history.slice(0, 11).some((h) => h.author !== undefined)).toBe(false);
    expect(history.slice(11).every((h) => h.author === 'me <me@x>')).toBe(true);
    expect(image.layers).toHaveLength(1);
  });

  it('ENTRYPOINT drops a CMD inherited from the base, not one set in the same stage', async () => {
    expect((await buildText('FROM base:1\nENTRYPOINT ["/bin/echo"]')).image.config.config).toMatchObject({ Entrypoint: ['/bin/echo'] });
    expect((await buildText('FROM base:1\nENTRYPOINT ["/bin/echo"]')).image.config.config!.Cmd).toBeUndefined();
    expect((await buildText('FROM base:1\nCMD ["a"]\nENTRYPOINT echo hi')).image.config.config).toMatchObject({
      Cmd: ['a'],
      Entrypoint: ['/bin/sh', '-c', 'echo hi'],
    });
  });

  it('substitutes ENV and ARG values (build args override defaults)', async () => {
    const { image } = await buildText('FROM base:1\nARG V=default\nENV E=$V LITERAL=\'$V\'\nLABEL v=${V:-x}\nWORKDIR /w/$V', { buildArgs: { V: 'given' } });
    expect(image.config.config!.Env).toEqual(['PATH=/bin', 'E=given', 'LITERAL=$V']);
    expect(image.config.config!.Labels).toMatchObject({ v: 'given' });
    expect(image.config.config!.WorkingDir).toBe('/w/given');
  });

  it('HEALTHCHECK takes unset durations and retries from the previous one, as Docker\'s daemon merges them', async () => {
    const { image } = await buildText('FROM base:1\nHEALTHCHECK --interval=1m30s --timeout=10s --retries=5 CMD ["/bin/true"]\nHEALTHCHECK CMD ["/bin/false"]');
    expect(image.config.config!.Healthcheck).toEqual({ Test: ['CMD', '/bin/false'], Interval: 90_000_000_000, Timeout: 10_000_000_000, Retries: 5 });
    const none = await buildText('FROM base:1\nHEALTHCHECK --interval=1m30s --retries=5 CMD ["/bin/true"]\nHEALTHCHECK NONE');
    expect(none.image.config.config!.Healthcheck).toEqual({ Test: ['NONE'], Interval: 90_000_000_000, Retries: 5 });
  });

  it('a stage whose base has no PATH gets Docker\'s default one', async () => {
    const { image } = await buildText('FROM scratch\nENV A=1');
    expect(image.config.config!.Env).toEqual(['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'A=1']);
  });

  it('refuses invalid values at the step', async () => {
    await expect(buildText('FROM base:1\nEXPOSE 80:80')).rejects.toThrow('EXPOSE does not publish ports');
    await expect(buildText('FROM base:1\nEXPOSE 80/xyz')).rejects.toThrow('Invalid proto: xyz');
    await expect(buildText('FROM base:1\nSTOPSIGNAL SIGNOPE')).rejects.toThrow('Invalid signal: SIGNOPE');
  });
});

describe('WORKDIR', () => {
  it('makes a layer only when it creates the directory', async () => {
    const { image } = await buildText('FROM base:1\nWORKDIR /a\nWORKDIR /brandnew/w\nWORKDIR rel\nWORKDIR /link');
    const history = image.config.history!.slice(1);
    expect(history.map((h) => [h.created_by, h.empty_layer ?? false])).toEqual([
      ['/bin/sh -c #(nop) WORKDIR /a', true],
      ['/bin/sh -c #(nop) WORKDIR /brandnew/w', false],
      ['/bin/sh -c #(nop) WORKDIR /brandnew/w/rel', false],
      ['/bin/sh -c #(nop) WORKDIR /link', true],
    ]);
    expect(await layerListing(store, image.layers[1]!)).toEqual(['brandnew directory 0755 0:0', 'brandnew/w directory 0755 0:0']);
    expect(await layerListing(store, image.layers[2]!)).toEqual(['brandnew directory 0755 0:0', 'brandnew/w directory 0755 0:0', 'brandnew/w/rel directory 0755 0:0']);
    expect(image.config.config!.WorkingDir).toBe('/link');
  });

  it('refuses a file in the way', async () => {
    await expect(buildText('FROM base:1\nWORKDIR /etc/passwd')).rejects.toThrow('Cannot mkdir: /etc/passwd is not a directory');
  });
});

describe('stages', () => {
  it('builds only the stages the target needs', async () => {
    const dockerfile = [
      'FROM base:1 AS never',
      'COPY does-not-exist /x',
      'FROM base:1 AS deps',
      'COPY f.txt /deps/',
      'FROM scratch AS final',
      'COPY --from=deps /deps/f.txt /f.txt',
      'FROM final AS later',
      'LABEL later=1',
    ].join('\n');
    const { image, output, result } = await buildText(dockerfile, { target: 'final' }, { 'f.txt': 'f\n' });
    expect(output).not.toContain('does-not-exist');
    expect(output).toContain('Step 1/4 : FROM base:1 AS deps');
    expect(output).toContain('Step 3/4 : FROM scratch AS final');
    expect(image.layers).toHaveLength(1);
    expect(await layerListing(store, image.layers[0]!)).toEqual(['f.txt file 0644 0:0']);
    expect(result.steps.map((s) => s.instruction)).toEqual(['FROM base:1 AS deps', 'COPY f.txt /deps/', 'FROM scratch AS final', 'COPY --from=deps /deps/f.txt /f.txt']);
    // The last stage is the default target; it builds on "final".
    const later = await buildText(dockerfile.replace('COPY does-not-exist /x', 'LABEL n=1'), {}, { 'f.txt': 'f\n' });
    expect(later.image.config.config!.Labels).toEqual({ later: '1' });
    expect(later.output).not.toContain('FROM base:1 AS never');
  });

  it('refuses an unknown target before anything runs', async () => {
    await expect(buildText('FROM base:1\nLABEL a=b', { target: 'nope' })).rejects.toThrow('failed to reach build target nope in Dockerfile');
  });

  it('a FROM-only Dockerfile gives the base image itself', async () => {
    const base = await store.images.resolve('base:1');
    const { result } = await buildText('FROM base:1', { tags: ['same:1'] });
    expect(result.id).toBe(base.id);
    expect(result.tags).toEqual(['same:1']);
    expect((await store.images.resolve('same:1')).id).toBe(base.id);
  });

  it('FROM scratch takes the requested platform; an empty build is refused', async () => {
    const { image } = await buildText('FROM scratch\nLABEL a=b', { platform: 'linux/arm64' });
    expect([image.config.os, image.config.architecture]).toEqual(['linux', 'arm64']);
    await expect(buildText('FROM scratch')).rejects.toThrow('No image was generated');
  });

  it('an image that is not in the store is a clear error', async () => {
    await expect(buildText('FROM nosuch/image:1\nLABEL a=b')).rejects.toThrow('strata does not pull');
  });

  it('uses meta ARGs in FROM', async () => {
    const { image } = await buildText('ARG TAG=1\nFROM base:${TAG}\nLABEL x=y');
    expect(image.config.config!.Labels).toMatchObject({ from: 'base', x: 'y' });
  });
});

describe('ONBUILD', () => {
  it('runs the base image triggers first and clears them', async () => {
    await buildText('FROM base:1\nONBUILD COPY f.txt /ob/\nONBUILD LABEL triggered=yes', { tags: ['onbuild:1'] }, { 'f.txt': 'x' });
    const { image, output, result } = await buildText('FROM onbuild:1\nLABEL after=1', {}, { 'f.txt': 'x' });
    expect(output).toContain('# Executing 2 build triggers');
    expect(image.config.config!.OnBuild).toBeUndefined();
    expect(image.config.config!.Labels).toMatchObject({ triggered: 'yes', after: '1' });
    expect(await layerListing(store, image.layers.at(-1)!)).toEqual(['ob directory 0755 0:0', 'ob/f.txt file 0644 0:0']);
    expect(result.steps.map((s) => s.instruction)).toEqual(['FROM onbuild:1', 'COPY f.txt /ob/', 'LABEL triggered=yes', 'LABEL after=1']);
  });
});

describe('output and failures', () => {
  it('prints classic-builder progress', async () => {
    const { output, result } = await buildText('FROM base:1\nLABEL a=b\nCOPY f.txt /f', { tags: ['out:1', 'out:2'] }, { 'f.txt': 'x' });
    const short = result.id.slice(7, 19);
    const lines = output.trimEnd().split('\n');
    expect(lines[0]).toBe('Step 1/3 : FROM base:1');
    expect(lines[1]).toMatch(/^ ---> [a-f0-9]{12}$/);
    expect(lines[2]).toBe('Step 2/3 : LABEL a=b');
    expect(lines[3]).toMatch(/^ ---> Running in [a-f0-9]{12}$/);
    expect(lines[4]).toMatch(/^Removing intermediate container [a-f0-9]{12}$/);
    expect(lines[5]).toMatch(/^ ---> [a-f0-9]{12}$/);
    expect(lines[6]).toBe('Step 3/3 : COPY f.txt /f');
    expect(lines[7]).toBe(` ---> ${short}`);
    expect(lines.slice(8)).toEqual([`Successfully built ${short}`, 'Successfully tagged out:1', 'Successfully tagged out:2']);
  });

  it('-q prints only the image ID', async () => {
    const { output, result } = await buildText('FROM base:1\nLABEL quiet=1', { quiet: true });
    expect(output).toBe(`${result.id}\n`);
  });

  it('a bad Dockerfile fails before anything runs, naming the line', async () => {
    const err = await buildText('FROM base:1\nLABEL ok=1\nNOPE x', { tags: ['bad:1'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DockerfileError);
    expect((err as Error).message).toMatch(/^Dockerfile:3: unknown instruction: NOPE/);
    await expect(store.images.resolve('bad:1')).rejects.toThrow();
  });

  it('a failed build tags nothing and leaves only unreferenced blobs', async () => {
    const before = new Set<string>();
    for await (const d of store.content.list()) before.add(d);
    const err = await buildText('FROM base:1\nCOPY f.txt /new-layer-blob\nCOPY missing /x', { tags: ['failed:1'] }, { 'f.txt': 'unique content 9c1f' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect((err as BuildError).step).toBe(3);
    await expect(store.images.resolve('failed:1')).rejects.toThrow();
    // The new layer is only in the store under a lease that is gone: gc may remove it.
    const { collectGarbage } = await import('../../src/image/gc.js');
    const { readdir, rm } = await import('node:fs/promises');
    // Cache entries are gc roots by design; without them the new blob is garbage.
    const cacheDir = join(store.root, 'strata', 'buildcache');
    for (const name of await readdir(cacheDir)) if (name.endsWith('.json') && !name.startsWith('stat-')) await rm(join(cacheDir, name));
    await collectGarbage(store.images);
    const after = new Set<string>();
    for await (const d of store.content.list()) after.add(d);
    expect([...after].filter((d) => !before.has(d))).toEqual([]);
  });
});

describe.skipIf(noRun !== '')('RUN (needs root, runc/crun and overlayfs)', () => {
  let busybox: string;
  beforeAll(async () => {
    const dir = await tempDir();
    await makeBusyboxRootfs(join(dir, 'rootfs'));
    const layer = await makeLayer(store.content, { dir: join(dir, 'rootfs') }, { sourceDateEpoch: 946_684_800 });
    const config = newImageConfig({ created: '2000-01-01T00:00:00Z', config: { Env: [`PATH=${BUSYBOX_PATH}`], Cmd: ['sh'] }, diffIds: [layer.diffId] });
    const written = await writeImage(store.content, { config, layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }] });
    busybox = 'busybox:run';
    await store.images.addImage(written.manifest, [parseReference(busybox)]);
  });

  it('runs with the image env, build args, user and workdir; records the diff', async () => {
    const { image, output } = await buildText(
      [
        `FROM ${busybox}`,
        'ARG BA=fromarg',
        'ENV E1=env1',
        'RUN echo "out:$E1:$BA" && mkdir -p /d/e && echo x > /d/e/f && rm -rf /home',
        'WORKDIR /tmp/w',
        'RUN chmod 777 /tmp/w',
        'USER nobody',
        'RUN id > /tmp/w/id && pwd > /tmp/w/pwd',
        'RUN true',
      ].join('\n'),
    );
    expect(output).toContain('out:env1:fromarg');
    const history = image.config.history!;
    expect(history[2]).toMatchObject({ created_by: '|1 BA=fromarg /bin/sh -c echo "out:$E1:$BA" && mkdir -p /d/e && echo x > /d/e/f && rm -rf /home' });
    expect(history[2]!.empty_layer).toBeUndefined();
    expect(history.at(-1)).toMatchObject({ created_by: '|1 BA=fromarg /bin/sh -c true', empty_layer: true });
    expect(await layerListing(store, image.layers[1]!)).toEqual(['.wh.home file 0600 0:0', 'd directory 0755 0:0', 'd/e directory 0755 0:0', 'd/e/f file 0644 0:0']);
    const ran = await layerEntries(store, image.layers[4]!);
    expect(ran.find((e) => e.path === 'tmp/w/id')).toMatchObject({ uid: 65534, content: 'uid=65534(nobody) gid=65534(nobody) groups=65534(nobody)\n' });
    expect(ran.find((e) => e.path === 'tmp/w/pwd')).toMatchObject({ content: '/tmp/w\n' });
  });

  it('creates VOLUME mount points and discards what RUN writes in them, like Docker', async () => {
    const { image } = await buildText(`FROM ${busybox}\nVOLUME /vol\nRUN echo lost > /vol/x && mkdir /made`);
    expect(await layerListing(store, image.layers[1]!)).toEqual(['made directory 0755 0:0', 'vol directory 0755 0:0']);
  });

  it('runs heredocs as BuildKit does, and exec form as is', async () => {
    const { output } = await buildText(`FROM ${busybox}\nRUN <<EOF\necho from-heredoc\nEOF\nRUN <<EOF\n#!/bin/sh\necho script-$0\nEOF\nRUN ["echo", "exec-form"]`);
    expect(output).toContain('from-heredoc');
    expect(output).toContain('script-/dev/pipes/EOF');
    expect(output).toContain('exec-form');
  });

  it("fails with Docker's message, naming the step, and tags nothing", async () => {
    const err = await buildText(`FROM ${busybox}\nRUN exit 3`, { tags: ['runfail:1'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect((err as BuildError).message).toBe("The command '/bin/sh -c exit 3' returned a non-zero code: 3");
    expect((err as BuildError).step).toBe(2);
    expect((err as BuildError).instruction).toBe('RUN exit 3');
    await expect(store.images.resolve('runfail:1')).rejects.toThrow();
  });

  it('has no network by default; --network=host and the build option give the host network', async () => {
    const list = 'RUN echo "nets: $(ls /sys/class/net | sort | tr \'\\n\' \' \')end"';
    expect((await buildText(`FROM ${busybox}\n${list}`)).output).toContain('nets: lo end\n');
    const host = (await readdir('/sys/class/net')).sort().join(' ');
    expect((await buildText(`FROM ${busybox}\n${list.replace('RUN', 'RUN --network=host')}`)).output).toContain(`nets: ${host} end\n`);
    expect((await buildText(`FROM ${busybox}\n${list} # option`, { network: 'host' })).output).toContain(`nets: ${host} end\n`);
  });
});

describe.skipIf(noRun === '')('RUN where containers cannot run', () => {
  it('fails before anything runs with the runtime one-line reason', async () => {
    const err = await buildText('FROM base:1\nLABEL a=b\nRUN true').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect((err as BuildError).message).toMatch(/^cannot run RUN steps: /);
    expect((err as BuildError).message).not.toContain('\n');
    expect((err as BuildError).line).toBe(3);
  });
});

describe('RUN without a runtime', () => {
  it('a Dockerfile without RUN builds whatever the runtime option says', async () => {
    await expect(buildText('FROM base:1\nLABEL a=b', { runtime: '/nonexistent/runc' })).resolves.toBeDefined();
  });

  it('a Dockerfile with RUN fails up front when the runtime is unusable', async () => {
    const err = await buildText('FROM base:1\nLABEL a=b\nRUN true', { runtime: '/nonexistent/runc' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect((err as BuildError).message).toContain('cannot run RUN steps');
    expect((err as BuildError).instruction).toBe('RUN true');
    expect((err as BuildError).step).toBe(3);
  });
});
