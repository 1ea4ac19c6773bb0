import { afterEach, describe, expect, it } from 'vitest';
import {
  createdSince,
  ellipsis,
  formatCreated,
  formatGoG,
  historyRows,
  HISTORY_HEADERS,
  humanDuration,
  humanSize,
  imagesCells,
  imagesHeaders,
  imagesRows,
  inspectConfig,
  inspectImage,
  renderTable,
  truncateId,
} from '../../src/image/views.js';
import type { ImageSummary } from '../../src/image/image-store.js';
import { newImageConfig } from '../../src/image/config.js';
import type { ImageManifest } from '../../src/image/types.js';
import { MediaType } from '../../src/image/mediatypes.js';
import { addImage, tempStore } from './helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

const ID = 'sha256:a416a98b71e224a31ee99cff8e16063554498227d2b696152a9c3e0aa65e5824';
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

describe('go-units formatting', () => {
  it.each([
    [0, '0B'],
    [1, '1B'],
    [999, '999B'],
    [1000, '1kB'],
    [1125, '1.12kB'], // exact tie: Go rounds half to even
    [1135, '1.14kB'], // 1.135 is stored as 1.13500000000000000888…
    [1375, '1.38kB'],
    [4261550, '4.26MB'],
    [999_500, '1e+03kB'], // Go's %g switches to exponent form here too
    [12_345_678, '12.3MB'],
    [123_456_789, '123MB'],
    [1e9, '1GB'],
    [1.5e12, '1.5TB'],
  ])('humanSize(%d) = %s', (bytes, text) => {
    expect(humanSize(bytes)).toBe(text);
  });

  it('formatGoG follows strconv.FormatFloat(x, g, p)', () => {
    expect(formatGoG(0.0001234, 3)).toBe('0.000123');
    expect(formatGoG(0.00001234, 3)).toBe('1.23e-05');
    expect(formatGoG(100, 3)).toBe('100');
    expect(formatGoG(2.5, 1)).toBe('2');
    expect(formatGoG(3.5, 1)).toBe('4');
  });

  it.each([
    [0, 'Less than a second'],
    [1500, '1 second'],
    [59 * SECOND, '59 seconds'],
    [60 * SECOND, 'About a minute'],
    [119 * SECOND, 'About a minute'],
    [2 * MINUTE, '2 minutes'],
    [59 * MINUTE, '59 minutes'],
    [60 * MINUTE, 'About an hour'],
    [89 * MINUTE, 'About an hour'],
    [90 * MINUTE, '2 hours'],
    [47 * HOUR, '47 hours'],
    [48 * HOUR, '2 days'],
    [13 * DAY, '13 days'],
    [14 * DAY, '2 weeks'],
    [59 * DAY, '8 weeks'],
    [60 * DAY, '2 months'],
    [729 * DAY, '24 months'],
    [730 * DAY, '2 years'],
  ])('humanDuration(%d) = %s', (ms, text) => {
    expect(humanDuration(ms)).toBe(text);
  });

  it('createdSince hides missing and pre-2000 times', () => {
    const now = new Date('2024-01-01T12:00:00Z');
    expect(createdSince('2024-01-01T10:00:00Z', now)).toBe('2 hours ago');
    expect(createdSince(undefined, now)).toBe('');
    expect(createdSince('1999-12-31T00:00:00Z', now)).toBe('');
  });

  it('ellipsis and truncateId match the Docker CLI', () => {
    const long = '/bin/sh -c #(nop) ADD file:71356d2ad59aa3119d4e5f in /';
    expect(ellipsis(long, 45)).toBe('/bin/sh -c #(nop) ADD file:71356d2ad59aa3119…');
    expect([...ellipsis(long, 45)]).toHaveLength(45);
    expect(ellipsis('short', 45)).toBe('short');
    expect(ellipsis('日本語のテキスト', 7)).toBe('日本語…');
    expect(truncateId(ID)).toBe('a416a98b71e2');
    expect(truncateId('<missing>')).toBe('<missing>');
  });

  it('formatCreated trims like RFC3339Nano', () => {
    expect(formatCreated('2024-01-02T03:04:05.120000000Z')).toBe('2024-01-02T03:04:05.12Z');
    expect(formatCreated('2024-01-02T03:04:05.000Z')).toBe('2024-01-02T03:04:05Z');
    expect(formatCreated('2024-01-02T03:04:05+02:00')).toBe('2024-01-02T03:04:05+02:00');
    expect(formatCreated(undefined)).toBe('');
  });
});

describe('historyRows', () => {
  const manifest: ImageManifest = {
    schemaVersion: 2,
    config: { mediaType: MediaType.OciConfig, digest: ID, size: 1 },
    layers: [
      { mediaType: MediaType.OciLayerGzip, digest: `sha256:${'1'.repeat(64)}`, size: 100 },
      { mediaType: MediaType.OciLayerGzip, digest: `sha256:${'2'.repeat(64)}`, size: 200 },
    ],
  };
  const config = newImageConfig({
    diffIds: [`sha256:${'a'.repeat(64)}`, `sha256:${'b'.repeat(64)}`],
    history: [
      { created: '2024-01-01T08:00:00Z', created_by: '/bin/sh -c #(nop) ADD file:71356d2ad59aa3119d4e5f in / ' },
      { created: '2024-01-01T08:00:01Z', created_by: '/bin/sh -c #(nop)  CMD ["sh"]', empty_layer: true },
      { created: '2024-01-01T10:00:00Z', created_by: '/bin/sh -c apk add\tcurl', comment: 'buildkit.dockerfile.v0' },
    ],
  });
  const now = new Date('2024-01-01T12:00:00Z');

  it('lists steps newest first with Docker’s columns', () => {
    const rows = historyRows(config, manifest, { now, layerSizes: [4_261_550, 1_000] });
    expect(rows.map((r) => [r.image, r.created, r.createdBy, r.size, r.comment])).toEqual([
      ['a416a98b71e2', '2 hours ago', '/bin/sh -c apk add curl', '1kB', 'buildkit.dockerfile.v0'],
      ['<missing>', '4 hours ago', '/bin/sh -c #(nop)  CMD ["sh"]', '0B', ''],
      ['<missing>', '4 hours ago', '/bin/sh -c #(nop) ADD file:71356d2ad59aa3119…', '4.26MB', ''],
    ]);
    expect(HISTORY_HEADERS).toEqual(['IMAGE', 'CREATED', 'CREATED BY', 'SIZE', 'COMMENT']);
  });

  it('--no-trunc and --human=false', () => {
    const rows = historyRows(config, manifest, { now, noTrunc: true, human: false });
    expect(rows[0]).toMatchObject({ image: ID, created: '2024-01-01T10:00:00Z', size: '200' });
    expect(rows[2]!.createdBy).toBe('/bin/sh -c #(nop) ADD file:71356d2ad59aa3119d4e5f in / ');
  });

  it('refuses a history with more layers than the image', () => {
    const broken = { ...config, history: [...config.history!, { created_by: 'extra' }] };
    expect(() => historyRows(broken, manifest)).toThrow('too many non-empty layers in History section');
  });
});

describe('imagesRows and tables', () => {
  const now = new Date('2024-01-15T00:00:00Z');
  const summary = (over: Partial<ImageSummary>): ImageSummary => ({
    id: ID,
    manifestDigest: `sha256:${'9'.repeat(64)}`,
    repoTags: [],
    repoDigests: [],
    created: '2024-01-01T00:00:00Z',
    size: 4_261_550,
    labels: {},
    platform: { os: 'linux', architecture: 'amd64' },
    ...over,
  });
  const digest = `sha256:${'d'.repeat(64)}`;

  it('one row per tag, <none> for dangling and digest-only repositories', () => {
    const list = [
      summary({ repoTags: ['busybox:latest', 'busybox:1.36', 'localhost:5000/bb:1'] }),
      summary({ repoDigests: [`alpine@${digest}`] }),
      summary({ created: undefined }),
    ];
    const rows = imagesRows(list, { now });
    expect(rows.map((r) => imagesCells(r))).toEqual([
      ['busybox', 'latest', 'a416a98b71e2', '2 weeks ago', '4.26MB'],
      ['busybox', '1.36', 'a416a98b71e2', '2 weeks ago', '4.26MB'],
      ['localhost:5000/bb', '1', 'a416a98b71e2', '2 weeks ago', '4.26MB'],
      ['alpine', '<none>', 'a416a98b71e2', '2 weeks ago', '4.26MB'],
      ['<none>', '<none>', 'a416a98b71e2', 'N/A', '4.26MB'],
    ]);
    const withDigests = imagesRows([summary({ repoTags: ['alpine:3'], repoDigests: [`alpine@${digest}`] })], { now, digests: true, noTrunc: true });
    expect(withDigests.map((r) => imagesCells(r, { digests: true }))).toEqual([['alpine', '3', digest, ID, '2 weeks ago', '4.26MB']]);
    expect(imagesHeaders({ digests: true })).toEqual(['REPOSITORY', 'TAG', 'DIGEST', 'IMAGE ID', 'CREATED', 'SIZE']);
  });

  it('lays out columns like the Docker CLI', () => {
    const rows = imagesRows([summary({ repoTags: ['busybox:latest'] })], { now }).map((r) => imagesCells(r));
    expect(renderTable(imagesHeaders(), rows)).toBe(
      'REPOSITORY   TAG       IMAGE ID       CREATED       SIZE\n' + 'busybox      latest    a416a98b71e2   2 weeks ago   4.26MB\n',
    );
  });
});

describe('inspectImage', () => {
  it('has Docker’s field set and conventions', async () => {
    const { store, cleanup } = await tempStore();
    cleanups.push(cleanup);
    const image = await addImage(store, ['busybox:latest'], {
      layers: [{ a: 'a'.repeat(1000) }, { b: 'b' }],
      config: { Env: ['PATH=/bin'], Cmd: ['sh'], ExposedPorts: { '80/tcp': {} }, StopSignal: 'SIGQUIT' },
      created: '2024-01-02T03:04:05.500Z',
    });
    const inspect = await inspectImage(store, await store.resolve('busybox'));
    expect(Object.keys(inspect)).toEqual([
      'Id', 'RepoTags', 'RepoDigests', 'Parent', 'Comment', 'Created', 'DockerVersion', 'Author', 'Config',
      'Architecture', 'Os', 'Size', 'GraphDriver', 'RootFS', 'Metadata',
    ]);
    expect(inspect).toMatchObject({
      Id: image.configDigest,
      RepoTags: ['busybox:latest'],
      RepoDigests: [],
      Parent: '',
      Comment: '',
      Created: '2024-01-02T03:04:05.5Z',
      DockerVersion: '',
      Author: '',
      Os: 'linux',
      Size: image.layers[0]!.uncompressedSize + image.layers[1]!.uncompressedSize,
      GraphDriver: { Data: {}, Name: 'strata' },
      RootFS: { Type: 'layers', Layers: image.layers.map((l) => l.diffId) },
    });
    expect(Date.parse(inspect.Metadata.LastTagTime)).not.toBeNaN();
    expect(Object.keys(inspect.Config)).toEqual([
      'Hostname', 'Domainname', 'User', 'AttachStdin', 'AttachStdout', 'AttachStderr', 'ExposedPorts', 'Tty', 'OpenStdin',
      'StdinOnce', 'Env', 'Cmd', 'Image', 'Volumes', 'WorkingDir', 'Entrypoint', 'OnBuild', 'Labels', 'StopSignal',
    ]);
    expect(inspect.Config).toMatchObject({ Env: ['PATH=/bin'], Cmd: ['sh'], Image: '', Volumes: null, Entrypoint: null, OnBuild: null, Labels: null, WorkingDir: '' });
  });

  it('an empty config gives Docker’s nulls, a never-tagged image the zero time', async () => {
    expect(inspectConfig(undefined)).toEqual({
      Hostname: '', Domainname: '', User: '', AttachStdin: false, AttachStdout: false, AttachStderr: false, Tty: false, OpenStdin: false,
      StdinOnce: false, Env: null, Cmd: null, Image: '', Volumes: null, WorkingDir: '', Entrypoint: null, OnBuild: null, Labels: null,
    });
    const { store, cleanup } = await tempStore();
    cleanups.push(cleanup);
    const image = await addImage(store, []);
    const inspect = await inspectImage(store, await store.resolve(image.configDigest));
    expect(inspect.Metadata.LastTagTime).toBe('0001-01-01T00:00:00Z');
    expect(inspect.RepoTags).toEqual([]);
  });
});
