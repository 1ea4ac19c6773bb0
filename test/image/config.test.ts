import { afterEach, describe, expect, it } from 'vitest';
import {
  InvalidChangeError,
  InvalidImageConfigError,
  applyChanges,
  hostPlatform,
  newImageConfig,
  normalizeImageConfig,
  normalizePlatform,
  parseImageConfig,
  parsePlatform,
  platformMatches,
  writeImage,
} from '../../src/image/config.js';
import { MediaType } from '../../src/image/mediatypes.js';
import type { ImageConfig, ImageManifest } from '../../src/image/types.js';
import { putLayer, tempStore } from './helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

describe('platforms', () => {
  it('maps the host to GOARCH names', () => {
    const expected: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386' };
    const host = hostPlatform();
    expect(host.os).toBe('linux');
    if (expected[process.arch]) expect(host.architecture).toBe(expected[process.arch]);
    if (process.arch === 'arm') expect(host.variant).toMatch(/^v\d$/);
    else expect(host.variant).toBeUndefined();
  });

  it('normalizes aliases like containerd', () => {
    expect(normalizePlatform({ os: 'Linux', architecture: 'x86_64' })).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(normalizePlatform({ os: 'linux', architecture: 'aarch64', variant: 'v8' })).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(normalizePlatform({ os: 'linux', architecture: 'armhf' })).toEqual({ os: 'linux', architecture: 'arm', variant: 'v7' });
    expect(normalizePlatform({ os: 'linux', architecture: 'arm' })).toEqual({ os: 'linux', architecture: 'arm', variant: 'v7' });
    expect(normalizePlatform({ os: 'linux', architecture: 'i386' })).toEqual({ os: 'linux', architecture: '386' });
    expect(parsePlatform('linux/arm/v6')).toEqual({ os: 'linux', architecture: 'arm', variant: 'v6' });
    expect(parsePlatform('arm64')).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(() => parsePlatform('linux//x')).toThrow(InvalidImageConfigError);
    expect(platformMatches({ os: 'linux', architecture: 'x86_64' }, { os: 'linux', architecture: 'amd64' })).toBe(true);
    expect(platformMatches({ os: 'linux', architecture: 'arm', variant: 'v6' }, { os: 'linux', architecture: 'arm', variant: 'v7' })).toBe(false);
  });
});

describe('image configs', () => {
  it('newImageConfig fills the model with the host platform', () => {
    const config = newImageConfig({ created: '2024-01-01T00:00:00Z' });
    expect(config).toMatchObject({ created: '2024-01-01T00:00:00Z', os: 'linux', architecture: hostPlatform().architecture, config: {}, rootfs: { type: 'layers', diff_ids: [] }, history: [] });
  });

  it('newImageConfig takes platform fields flat or as a platform', () => {
    expect(newImageConfig({ architecture: 'arm64' })).toMatchObject({ architecture: 'arm64', os: 'linux' });
    expect(newImageConfig({ architecture: 'arm64' }).variant).toBeUndefined();
    expect(newImageConfig({ platform: { os: 'linux', architecture: 'arm', variant: 'v6' } })).toMatchObject({ architecture: 'arm', variant: 'v6' });
    expect(newImageConfig({ architecture: 'x86_64' }).architecture).toBe('amd64');
  });

  it('parseImageConfig validates without rewriting', () => {
    const raw = { architecture: 'x86_64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, extra: 1 };
    expect(parseImageConfig(raw)).toBe(raw);
    expect(normalizeImageConfig(raw)).toMatchObject({ architecture: 'amd64', config: {}, extra: 1 });
    expect(raw.architecture).toBe('x86_64');
  });

  it.each([
    [null, 'not a JSON object'],
    [{ os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }, 'missing required field "architecture"'],
    [{ architecture: 'amd64', os: 'linux' }, 'rootfs must be'],
    [{ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: ['sha256:abc'] } }, 'rootfs.diff_ids[0]'],
    [{ architecture: 'amd64', os: 'linux', created: 'yesterday', rootfs: { type: 'layers', diff_ids: [] } }, '"created" is not an RFC 3339 time'],
    [{ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config: { Env: 'PATH=/bin' } }, 'config.Env must be an array of strings'],
    [{ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config: { Labels: { a: 1 } } }, 'config.Labels must be an object of strings'],
  ])('parseImageConfig refuses %j', (raw, message) => {
    expect(() => parseImageConfig(raw)).toThrow(message);
  });
});

describe('applyChanges', () => {
  const base = (): ImageConfig =>
    newImageConfig({ created: '2024-01-01T00:00:00Z', config: { Env: ['PATH=/usr/bin:/bin', 'HOME=/root'], Cmd: ['sh'], WorkingDir: '/srv' } });
  const apply = (...changes: string[]) => applyChanges(base(), changes).config!;

  it('CMD: JSON form, shell form, custom shell', () => {
    expect(apply('CMD ["echo","hi"]').Cmd).toEqual(['echo', 'hi']);
    expect(apply('CMD echo "$HOME"').Cmd).toEqual(['/bin/sh', '-c', 'echo "$HOME"']);
    expect(apply('cmd [not json').Cmd).toEqual(['/bin/sh', '-c', '[not json']);
    const withShell = applyChanges(newImageConfig({ config: { Shell: ['/bin/bash', '-xc'] } }), ['CMD make']).config!;
    expect(withShell.Cmd).toEqual(['/bin/bash', '-xc', 'make']);
  });

  it('ENTRYPOINT clears an inherited CMD unless CMD came first', () => {
    expect(apply('ENTRYPOINT ["/app"]')).toMatchObject({ Entrypoint: ['/app'], Cmd: null });
    expect(apply('CMD ["--help"]', 'ENTRYPOINT ["/app"]')).toMatchObject({ Entrypoint: ['/app'], Cmd: ['--help'] });
    expect(apply('ENTRYPOINT /app -v', 'CMD ["x"]')).toMatchObject({ Entrypoint: ['/bin/sh', '-c', '/app -v'], Cmd: ['x'] });
  });

  it('ENV: pairs, quotes, legacy form, replacement and expansion', () => {
    const config = apply('ENV A=1 B="two words" C=\'$HOME\'', 'ENV HOME=/home/me', 'ENV D=$HOME E=${A}x F=${MISSING:-dflt}', 'ENV LEGACY some value here');
    expect(config.Env).toEqual([
      'PATH=/usr/bin:/bin',
      'HOME=/home/me',
      'A=1',
      'B=two words',
      'C=$HOME',
      'D=/home/me',
      'E=1x',
      'F=dflt',
      'LEGACY=some value here',
    ]);
    // Within one ENV, references see the values from before it, as in Docker.
    expect(apply('ENV X=1', 'ENV X=2 Y=$X').Env).toContain('Y=1');
  });

  it('LABEL, EXPOSE, USER, WORKDIR, VOLUME, STOPSIGNAL, ONBUILD', () => {
    const config = apply(
      'LABEL a=b "with space"="v v" c=$HOME',
      'EXPOSE 80 443/udp 8000-8002/TCP',
      'USER nobody:nogroup',
      'WORKDIR app/../bin',
      'VOLUME ["/data", "/logs"]',
      'VOLUME /cache /tmp/x',
      'STOPSIGNAL SIGQUIT',
      'ONBUILD RUN make',
    );
    expect(config.Labels).toEqual({ a: 'b', 'with space': 'v v', c: '/root' });
    expect(Object.keys(config.ExposedPorts!)).toEqual(['80/tcp', '443/udp', '8000/tcp', '8001/tcp', '8002/tcp']);
    expect(config.User).toBe('nobody:nogroup');
    expect(config.WorkingDir).toBe('/srv/bin');
    expect(Object.keys(config.Volumes!)).toEqual(['/data', '/logs', '/cache', '/tmp/x']);
    expect(config.StopSignal).toBe('SIGQUIT');
    expect(config.OnBuild).toEqual(['RUN make']);
    expect(apply('WORKDIR /abs/./path/').WorkingDir).toBe('/abs/path');
    expect(apply('STOPSIGNAL 9').StopSignal).toBe('9');
  });

  it('HEALTHCHECK', () => {
    expect(apply('HEALTHCHECK --interval=30s --retries=3 CMD curl -f http://localhost/').Healthcheck).toEqual({
      Test: ['CMD-SHELL', 'curl -f http://localhost/'],
      Interval: 30_000_000_000,
      Retries: 3,
    });
    expect(apply('HEALTHCHECK --timeout=1m30s CMD ["check","now"]').Healthcheck).toEqual({ Test: ['CMD', 'check', 'now'], Timeout: 90_000_000_000 });
    expect(apply('HEALTHCHECK NONE').Healthcheck).toEqual({ Test: ['NONE'] });
  });

  it('takes several instructions per string and continuation lines', () => {
    const config = apply('# comment\nUSER a\n\nWORKDIR /w', 'CMD echo \\\n  hi');
    expect(config).toMatchObject({ User: 'a', WorkingDir: '/w', Cmd: ['/bin/sh', '-c', 'echo   hi'] });
  });

  it('does not modify its input', () => {
    const config = base();
    const before = JSON.stringify(config);
    applyChanges(config, ['ENV X=1', 'CMD ["x"]']);
    expect(JSON.stringify(config)).toBe(before);
  });

  it.each([
    ['FROM busybox', 'from is not a valid change command'],
    ['RUN make', 'run is not a valid change command'],
    ['COPY . /', 'copy is not a valid change command'],
    ['EXPOSE abc', 'invalid containerPort: abc'],
    ['EXPOSE 80/xyz', 'invalid proto: xyz'],
    ['EXPOSE 70000', 'invalid containerPort: 70000'],
    ['STOPSIGNAL SIGNOPE', 'Invalid signal: SIGNOPE'],
    ['ONBUILD FROM x', "FROM isn't allowed as an ONBUILD trigger"],
    ['ONBUILD ONBUILD RUN x', 'Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed'],
    ['ENV', 'ENV requires at least one argument'],
    ['LABEL lonely', 'LABEL must have two arguments'],
    ['ENV a=1 b', "Syntax error - can't find = in \"b\". Must be of the form: name=value"],
    ['USER a b', 'USER requires exactly one argument'],
    ['VOLUME [""]', 'VOLUME specified can not be an empty string'],
    ['ENV A="unterminated', 'unexpected end of statement while looking for matching "'],
    ['HEALTHCHECK --interval=5 CMD x', 'invalid --interval value'],
    ['CMD', 'CMD requires at least one argument'],
  ])('refuses %j', (change, message) => {
    expect(() => apply(change)).toThrow(InvalidChangeError);
    expect(() => apply(change)).toThrow(message);
  });
});

describe('writeImage', () => {
  it('stores the config and an OCI manifest naming it and the layers', async () => {
    const { store, cleanup } = await tempStore();
    cleanups.push(cleanup);
    const layer = await putLayer(store, { 'hello.txt': 'hello\n' });
    const config = newImageConfig({ diffIds: [layer.diffId], created: '2024-01-01T00:00:00Z' });
    const written = await writeImage(store.content, { config, layers: [layer.descriptor], annotations: { a: 'b' } });
    expect(written.manifest).toMatchObject({ mediaType: MediaType.OciManifest, platform: { os: 'linux', architecture: hostPlatform().architecture } });
    const manifest = await store.content.readJson<ImageManifest>(written.manifest.digest);
    expect(manifest).toEqual({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, digest: written.configDigest, size: (await store.content.size(written.configDigest))! },
      layers: [layer.descriptor],
      annotations: { a: 'b' },
    });
    expect(await store.content.readJson(written.configDigest)).toEqual(config);
    // Same input, same bytes.
    expect((await writeImage(store.content, { config, layers: [layer.descriptor], annotations: { a: 'b' } })).manifest.digest).toBe(written.manifest.digest);
  });

  it('refuses inconsistent or incomplete images', async () => {
    const { store, cleanup } = await tempStore();
    cleanups.push(cleanup);
    const layer = await putLayer(store, { 'a': 'a' });
    const config = newImageConfig({ diffIds: [layer.diffId] });
    await expect(writeImage(store.content, { config, layers: [] })).rejects.toThrow('image has 0 layer(s) but its config lists 1 diff_id(s)');
    await expect(writeImage(store.content, { config, layers: [{ ...layer.descriptor, size: 1 }] })).rejects.toThrow(/but its descriptor says 1/);
    await expect(writeImage(store.content, { config, layers: [{ ...layer.descriptor, digest: `sha256:${'0'.repeat(64)}` }] })).rejects.toThrow(/is not in the content store/);
    await expect(writeImage(store.content, { config, layers: [{ ...layer.descriptor, mediaType: MediaType.OciConfig }] })).rejects.toThrow(/not a layer type/);
  });
});
