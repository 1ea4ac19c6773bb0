/**
 * The comparison the build differential tests rely on: it must find the
 * differences that matter (content, modes, owners, whiteouts, config,
 * history) and only those (not mtimes, uname/gname, hardlink order, how a
 * whiteout file is owned, null against absent config fields).
 */
import { mkdir, mkdtemp, rm, writeFile, chmod, symlink } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Strata } from '../../src/strata.js';
import { packEntries, type PackSource } from '../../src/tar/write.js';
import type { EntryHeader } from '../../src/tar/entry.js';
import type { ImageConfig } from '../../src/image/types.js';
import {
  compareImages,
  compareSnapshots,
  diffConfigs,
  normalizeCreatedBy,
  flattenLayers,
  summarizeLayer,
  type ImageSnapshot,
} from '../helpers/compare.js';
import { BUSYBOX_IMAGE, docker, dockerAvailable, dockerOk, dockerUnavailableReason, ensureBusyboxImage } from '../helpers/docker.js';

function header(path: string, type: EntryHeader['type'], extra: Partial<EntryHeader> = {}): EntryHeader {
  return { path, type, mode: type === 'directory' ? 0o755 : 0o644, uid: 0, gid: 0, mtime: 1_000_000, size: 0, ...extra };
}

function file(path: string, content: string, extra: Partial<EntryHeader> = {}): PackSource {
  const data = Buffer.from(content);
  return { header: header(path, 'file', { size: data.length, ...extra }), content: () => data };
}

function layer(entries: PackSource[]): ReturnType<typeof packEntries> {
  return packEntries(entries);
}

function snapshot(label: string, layers: Awaited<ReturnType<typeof summarizeLayer>>[], config: Partial<ImageConfig> = {}): ImageSnapshot {
  return {
    label,
    layers,
    config: { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, ...config },
  };
}

describe('summarizeLayer', () => {
  it('reduces whiteouts and opaque markers to what they hide, whatever the whiteout file looks like', async () => {
    const a = await summarizeLayer(
      layer([
        { header: header('etc', 'directory') },
        { header: header('etc/.wh.motd', 'file', { mode: 0o600, uid: 5 }) },
        { header: header('var/.wh..wh..opq', 'file', { mode: 0 }) },
      ]),
    );
    const b = await summarizeLayer(layer([{ header: header('etc', 'directory') }, { header: header('etc/.wh.motd', 'file', { mode: 0 }) }, { header: header('var/.wh..wh..opq', 'file') }]));
    expect(a).toEqual(b);
    expect(a).toContainEqual({ path: 'etc/motd', kind: 'whiteout' });
    expect(a).toContainEqual({ path: 'var', kind: 'opaque' });
  });

  it('treats hardlink groups the same whichever member the tar stores as the file', async () => {
    const one = await summarizeLayer(layer([file('a', 'same'), { header: header('b', 'hardlink', { linkname: 'a' }) }]));
    const two = await summarizeLayer(layer([file('b', 'same'), { header: header('a', 'hardlink', { linkname: 'b' }) }]));
    expect(one).toEqual(two);
    expect(one.map((e) => e.links)).toEqual([['a', 'b'], ['a', 'b']]);
  });

  it('ignores mtimes and user names but keeps setuid bits, owners, content and link targets', async () => {
    const base = await summarizeLayer(layer([file('bin/tool', 'x', { mode: 0o4755, uid: 1, mtime: 5, uname: 'daemon' }), { header: header('l', 'symlink', { linkname: '/bin/tool' }) }]));
    const later = await summarizeLayer(layer([file('bin/tool', 'x', { mode: 0o4755, uid: 1, mtime: 99_999, uname: 'other' }), { header: header('l', 'symlink', { linkname: '/bin/tool', mtime: 7 }) }]));
    expect(later).toEqual(base);
    const report = compareSnapshots(
      snapshot('docker x', [base]),
      snapshot('strata x', [await summarizeLayer(layer([file('bin/tool', 'y', { mode: 0o755, uid: 1 }), { header: header('l', 'symlink', { linkname: 'tool' }) }]))]),
    );
    expect(report.equal).toBe(false);
    expect(report.report).toMatch(/~ bin\/tool: mode docker=4755 strata=0755; sha256 docker=\w+ strata=\w+/);
    expect(report.report).toMatch(/~ l: linkname docker=\/bin\/tool strata=tool/);
  });
});

describe('flattenLayers', () => {
  it('applies whiteouts, opaque dirs and type changes as Docker does', async () => {
    const lower = await summarizeLayer(
      layer([
        { header: header('d', 'directory') },
        file('d/keep', '1'),
        { header: header('o', 'directory') },
        file('o/old', '2'),
        file('f', 'file becomes dir'),
        { header: header('g', 'directory') },
        file('g/child', 'dir becomes symlink'),
      ]),
    );
    const upper = await summarizeLayer(
      layer([
        { header: header('d', 'directory') },
        { header: header('d/.wh.keep', 'file') },
        { header: header('o', 'directory', { mode: 0o700 }) },
        { header: header('o/.wh..wh..opq', 'file') },
        file('o/new', '3'),
        { header: header('f', 'directory') },
        { header: header('g', 'symlink', { linkname: 'd' }) },
      ]),
    );
    const tree = flattenLayers([lower, upper]);
    expect([...tree.keys()].sort()).toEqual(['d', 'f', 'g', 'o', 'o/new']);
    expect(tree.get('o')?.mode).toBe(0o700);
    expect(tree.get('g')?.kind).toBe('symlink');
  });
});

describe('diffConfigs', () => {
  const base: ImageConfig = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } };

  it('counts null, empty and absent as the same, and ignores created times and Docker-only fields', () => {
    const docker: ImageConfig = {
      ...base,
      created: '2020-01-01T00:00:00Z',
      docker_version: '20.10.24',
      container_config: { Hostname: 'abc' },
      config: { Cmd: null, Entrypoint: null, OnBuild: null, WorkingDir: '', User: '', Labels: null as never, Env: ['A=1'], ArgsEscaped: false } as ImageConfig['config'],
      history: [{ created: '2020', created_by: '/bin/sh -c #(nop)  ENV A=1', empty_layer: true }],
    };
    const strata: ImageConfig = {
      ...base,
      created: '1970-01-01T00:00:00Z',
      config: { Env: ['A=1'] },
      history: [{ created: '1970', created_by: '/bin/sh -c #(nop)  ENV A=1', empty_layer: true }],
    };
    expect(diffConfigs(docker, strata)).toEqual([]);
  });

  it('names every differing field, history included', () => {
    const docker: ImageConfig = {
      ...base,
      config: { Env: ['A=1'], ExposedPorts: { '80/tcp': {} }, Healthcheck: { Test: ['CMD', 'true'], Interval: 1e9 } },
      history: [{ created_by: 'COPY a b' }, { created_by: 'x', empty_layer: true }],
    };
    const strata: ImageConfig = {
      ...base,
      config: { Env: ['A=2'], ExposedPorts: { '80/udp': {} }, Healthcheck: { Test: ['CMD', 'true'], Interval: 2e9 } },
      history: [{ created_by: 'COPY a c' }, { created_by: 'x' }],
    };
    const lines = diffConfigs(docker, strata);
    expect(lines).toContain('config.Env: docker=["A=1"] strata=["A=2"]');
    expect(lines).toContain('config.ExposedPorts: docker=["80/tcp"] strata=["80/udp"]');
    expect(lines.some((line) => line.startsWith('config.Healthcheck:'))).toBe(true);
    expect(lines).toContain('history[0].created_by: docker="COPY a b" strata="COPY a c"');
    expect(lines).toContain('history[1].empty_layer: docker=true strata=(unset)');
  });
});

describe('normalizeCreatedBy', () => {
  it("drops Docker 25's unset StartInterval from HEALTHCHECK history, and nothing else", () => {
    const docker20 = `/bin/sh -c #(nop)  HEALTHCHECK &{["CMD" "true"] "30s" "3s" "5s" '\\x03'}`;
    const docker25 = `/bin/sh -c #(nop)  HEALTHCHECK &{["CMD" "true"] "30s" "3s" "5s" "0s" '\\x03'}`;
    expect(normalizeCreatedBy(docker25)).toBe(docker20);
    expect(normalizeCreatedBy(docker20)).toBe(docker20);
    const set = `/bin/sh -c #(nop)  HEALTHCHECK &{["CMD" "true"] "30s" "3s" "5s" "2s" '\\x03'}`;
    expect(normalizeCreatedBy(set)).toBe(set);
    expect(normalizeCreatedBy('/bin/sh -c echo "0s"')).toBe('/bin/sh -c echo "0s"');
  });
});

describe.skipIf(!dockerAvailable())(`against the test dockerd${dockerAvailable() ? '' : ` (${dockerUnavailableReason()})`}`, () => {
  let work = '';
  let strata: Strata;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'strata-compare-'));
    strata = await Strata.open({ root: join(work, 'root') });
  });
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('finds docker save | strata load of the busybox base the same image', async () => {
    await ensureBusyboxImage();
    const archive = join(work, 'busybox.tar');
    await dockerOk(['save', '-o', archive, BUSYBOX_IMAGE]);
    await strata.load({ file: archive });
    const result = await compareImages(BUSYBOX_IMAGE, strata, BUSYBOX_IMAGE);
    expect(result.report).toBe('');
    expect(result.equal).toBe(true);
  });

  it('reports a changed mode, owner, content, extra file and config of an imported tree', async () => {
    const tree = join(work, 'tree');
    await mkdir(join(tree, 'app'), { recursive: true });
    await writeFile(join(tree, 'app', 'main.sh'), 'echo hi\n');
    await chmod(join(tree, 'app', 'main.sh'), 0o755);
    await writeFile(join(tree, 'app', 'data'), 'v1\n');
    await symlink('main.sh', join(tree, 'app', 'run'));
    const tar = join(work, 'tree.tar');
    execFileSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', tree, '-cf', tar, '.']);
    await dockerOk(['import', '--change', 'ENV A=1', tar, 'strata-test/compare:tree']);

    await chmod(join(tree, 'app', 'main.sh'), 0o700);
    await writeFile(join(tree, 'app', 'data'), 'v2\n');
    await writeFile(join(tree, 'app', 'extra'), '');
    await strata.import({ dir: tree }, { ref: 'strata-test/compare:tree', changes: ['ENV A=2'] });

    const result = await compareImages('strata-test/compare:tree', strata, 'strata-test/compare:tree');
    expect(result.equal).toBe(false);
    expect(result.report).toContain('~ app/main.sh: mode docker=0755 strata=0700');
    expect(result.report).toMatch(/~ app\/data: sha256 docker=\w+ strata=\w+/);
    expect(result.report).toContain('- strata only: app/extra  file 0644 0:0 0B');
    expect(result.report).toContain('config.Env: docker=["A=1"] strata=["A=2"]');
    expect(result.report).toContain('[flattened tree]');
    await docker(['rmi', 'strata-test/compare:tree']);
  });
});
