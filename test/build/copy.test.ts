/**
 * COPY and ADD through the whole engine: what each layer holds. The expected
 * listings are what `docker build` (Docker 20.10, classic builder) put in the
 * same layers for the same Dockerfile lines and base tree — copied-up parent
 * directories included — compared on paths, types, modes and owners (mtimes
 * differ on purpose: strata does not take them from the context).
 */
import { execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { chmod, link, mkdir, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build, BuildError } from '../../src/build/engine.js';
import {
  BASE_ENTRIES,
  builtImage,
  cleanupAll,
  layerEntries,
  layerListing,
  makeContext,
  makeImageFromEntries,
  openStore,
  type TestStore,
  type Tree,
} from './engine-helpers.js';

let store: TestStore;

const CONTEXT: Tree = {
  'f.txt': { content: 'hello\n', mode: 0o640 },
  'srcdir/s1': { content: 's1\n', mode: 0o600 },
  'srcdir/sub': { dir: true, mode: 0o700 },
  'srcdir/sub/s2': 's2\n',
  'srcdir/lnk': { symlink: 's1' },
  'emptydir': { dir: true },
};

beforeAll(async () => {
  store = await openStore();
  await makeImageFromEntries(store, 'base:1', BASE_ENTRIES);
});
afterAll(cleanupAll);

/** Builds `FROM base:1` + `lines` and returns the listing of each new layer. */
async function layersOf(lines: string, extra: Tree = {}): Promise<string[][]> {
  const ctx = await makeContext({ ...CONTEXT, ...extra, Dockerfile: `FROM base:1\n${lines}\n` });
  const result = await build(store, { contextDir: ctx });
  const image = await builtImage(store, result.id);
  const out: string[][] = [];
  for (const layer of image.layers.slice(1)) out.push(await layerListing(store, layer));
  return out;
}

async function one(line: string, extra: Tree = {}): Promise<string[]> {
  const layers = await layersOf(line, extra);
  expect(layers).toHaveLength(1);
  return layers[0]!;
}

describe('COPY destinations (as docker build)', () => {
  it('file into a new nested directory copies up the existing parents', async () => {
    expect(await one('COPY f.txt /a/b/c/d/')).toEqual([
      'a directory 0700 0:0',
      'a/b directory 0755 1000:1000',
      'a/b/c directory 0755 0:0',
      'a/b/c/d directory 0755 0:0',
      'a/b/c/d/f.txt file 0640 0:0',
    ]);
  });

  it('file to a new name', async () => {
    expect(await one('COPY f.txt /added.txt')).toEqual(['added.txt file 0640 0:0']);
  });

  it('file into an existing directory named without a slash', async () => {
    expect(await one('COPY f.txt /tmp')).toEqual(['tmp directory 1777 0:0', 'tmp/f.txt file 0640 0:0']);
  });

  it('through a symlinked directory: the layer holds the resolved path', async () => {
    const expected = ['a directory 0700 0:0', 'a/b directory 0755 1000:1000'];
    expect(await one('COPY f.txt /link/viaLink.txt')).toEqual([...expected, 'a/b/viaLink.txt file 0640 0:0']);
    expect(await one('COPY f.txt /link')).toEqual([...expected, 'a/b/f.txt file 0640 0:0']);
    expect(await one('COPY f.txt /rlink/rel.txt')).toEqual([...expected, 'a/b/rel.txt file 0640 0:0']);
  });

  it('onto a symlink to a file: writes the target', async () => {
    expect(await one('COPY f.txt /d/flink')).toEqual(['d directory 0755 0:0', 'd/e directory 0755 0:0', 'd/e/f file 0640 0:0']);
  });

  it('a directory copies its contents into an existing directory, which keeps its mode and owner', async () => {
    expect(await one('COPY srcdir /existing')).toEqual([
      'existing directory 0711 0:0',
      'existing/lnk symlink 0777 0:0 -> s1',
      'existing/s1 file 0600 0:0',
      'existing/sub directory 0700 0:0',
      'existing/sub/s2 file 0644 0:0',
    ]);
  });

  it('a directory to a new destination creates it 0755', async () => {
    expect(await one('COPY srcdir /newdest')).toEqual([
      'newdest directory 0755 0:0',
      'newdest/lnk symlink 0777 0:0 -> s1',
      'newdest/s1 file 0600 0:0',
      'newdest/sub directory 0700 0:0',
      'newdest/sub/s2 file 0644 0:0',
    ]);
    expect(await one('COPY emptydir /emptydest/')).toEqual(['emptydest directory 0755 0:0']);
  });

  it('--chown: copied entries and new destinations are chowned, an existing destination is not', async () => {
    expect(await one('COPY --chown=1234:5678 srcdir /existing/')).toEqual([
      'existing directory 0711 0:0',
      'existing/lnk symlink 0777 1234:5678 -> s1',
      'existing/s1 file 0600 1234:5678',
      'existing/sub directory 0700 1234:5678',
      'existing/sub/s2 file 0644 1234:5678',
    ]);
    expect(await one('COPY --chown=1234:5678 srcdir /existing2/')).toContain('existing2 directory 0755 1234:5678');
    // A file's missing parents take the owner too.
    expect(await one('COPY --chown=1000:1000 f.txt /chowned/y/')).toEqual([
      'chowned directory 0755 1000:1000',
      'chowned/y directory 0755 1000:1000',
      'chowned/y/f.txt file 0640 1000:1000',
    ]);
  });

  it('--chown names are looked up in the image; a lone user names the group too', async () => {
    expect(await one('COPY --chown=app:staff f.txt /x/')).toContain('x/f.txt file 0640 1001:50');
    expect(await one('COPY --chown=nobody f.txt /x/')).toContain('x/f.txt file 0640 65534:65534');
    await expect(layersOf('COPY --chown=nosuch f.txt /x/')).rejects.toThrow(
      'unable to convert uid/gid chown string to host mapping: can\'t find uid for user nosuch: no such user: nosuch',
    );
    await expect(layersOf('COPY --chown=app:nogroup f.txt /x/')).rejects.toThrow("can't find gid for group nogroup: no such group: nogroup");
    // "app" has no group named app.
    await expect(layersOf('COPY --chown=app f.txt /x/')).rejects.toThrow("can't find gid for group app");
  });

  it('clears setuid (and setgid of group-executable files) as the chown of Docker\'s copy does', async () => {
    const listing = await one('COPY suid sgid-x sgid-nox sgid-dir /special/', {
      suid: { content: 's', mode: 0o4755 },
      'sgid-x': { content: 's', mode: 0o2755 },
      'sgid-nox': { content: 's', mode: 0o2644 },
      'sgid-dir': { dir: true, mode: 0o2755 },
      'sgid-dir/inner': { content: 'i', mode: 0o4700 },
    });
    expect(listing).toEqual([
      'special directory 0755 0:0',
      'special/inner file 0700 0:0',
      'special/sgid-nox file 2644 0:0',
      'special/sgid-x file 0755 0:0',
      'special/suid file 0755 0:0',
    ]);
  });

  it('--chmod sets the mode of copied files and directories', async () => {
    expect(await one('COPY --chmod=0751 f.txt srcdir/s1 /m/')).toEqual(['m directory 0755 0:0', 'm/f.txt file 0751 0:0', 'm/s1 file 0751 0:0']);
    await expect(layersOf('COPY --chmod=u+x f.txt /m/')).rejects.toThrow('invalid chmod parameter');
  });

  it('several sources and wildcards go into a directory', async () => {
    expect(await one('COPY f.txt srcdir/s1 /multi/')).toEqual(['multi directory 0755 0:0', 'multi/f.txt file 0640 0:0', 'multi/s1 file 0600 0:0']);
    expect(await one('COPY srcdir/s* /globbed/')).toEqual(['globbed directory 0755 0:0', 'globbed/s1 file 0600 0:0', 'globbed/s2 file 0644 0:0']);
  });

  it('a relative destination is under WORKDIR', async () => {
    const layers = await layersOf('WORKDIR /w\nCOPY f.txt relcopy\nCOPY f.txt ./');
    expect(layers).toEqual([['w directory 0755 0:0'], ['w directory 0755 0:0', 'w/relcopy file 0640 0:0'], ['w directory 0755 0:0', 'w/f.txt file 0640 0:0']]);
  });

  it('a single symlink source is copied as the file it points to', async () => {
    expect(await one('COPY srcdir/lnk /copiedlink')).toEqual(['copiedlink file 0600 0:0']);
  });

  it('hardlinked files in a copied directory stay hardlinks', async () => {
    const ctx = await makeContext({ ...CONTEXT, Dockerfile: 'FROM base:1\nCOPY hl /hl\n', 'hl/one': 'same\n' });
    await link(join(ctx, 'hl', 'one'), join(ctx, 'hl', 'two'));
    const result = await build(store, { contextDir: ctx });
    const image = await builtImage(store, result.id);
    expect(await layerListing(store, image.layers[1]!)).toEqual(['hl directory 0755 0:0', 'hl/one file 0644 0:0', 'hl/two hardlink 0644 0:0 -> hl/one']);
  });

  it('copies file contents, with fixed mtimes (SOURCE_DATE_EPOCH, else 0)', async () => {
    const ctx = await makeContext({ ...CONTEXT, Dockerfile: 'FROM base:1\nCOPY f.txt /added.txt\n' });
    const plain = await builtImage(store, (await build(store, { contextDir: ctx })).id);
    const [entry] = await layerEntries(store, plain.layers[1]!);
    expect(entry).toMatchObject({ path: 'added.txt', content: 'hello\n', mtime: 0 });
    const dated = await builtImage(store, (await build(store, { contextDir: ctx, sourceDateEpoch: 1_234_567 })).id);
    expect((await layerEntries(store, dated.layers[1]!))[0]).toMatchObject({ mtime: 1_234_567 });
  });

  it('honours .dockerignore', async () => {
    const ctx = await makeContext({ ...CONTEXT, '.dockerignore': 'srcdir/sub\n', Dockerfile: 'FROM base:1\nCOPY . /app/\n' });
    const image = await builtImage(store, (await build(store, { contextDir: ctx })).id);
    const listing = await layerListing(store, image.layers[1]!);
    expect(listing).toContain('app/srcdir/s1 file 0600 0:0');
    expect(listing).toContain('app/Dockerfile file 0644 0:0');
    expect(listing.some((l) => l.includes('sub'))).toBe(false);
  });

  it('--link makes a layer independent of what is below', async () => {
    expect(await one('COPY --link f.txt /a/b/c/')).toEqual(['a directory 0755 0:0', 'a/b directory 0755 0:0', 'a/b/c directory 0755 0:0', 'a/b/c/f.txt file 0640 0:0']);
  });

  it('heredoc sources are 0644 files named after the delimiter', async () => {
    expect(await one('COPY <<greeting.txt /h/\nhi there\ngreeting.txt')).toEqual(['h directory 0755 0:0', 'h/greeting.txt file 0644 0:0']);
  });
});

describe('COPY errors (Docker wording)', () => {
  async function failure(lines: string): Promise<BuildError> {
    const err = await layersOf(lines).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    return err as BuildError;
  }

  it('a missing source', async () => {
    const err = await failure('COPY missing /x');
    expect(err.message).toBe('COPY failed: file not found in build context or excluded by .dockerignore: stat missing: file does not exist');
    expect(err.step).toBe(2);
    expect(err.line).toBe(2);
  });

  it('several sources need a directory destination ending in /', async () => {
    expect((await failure('COPY f.txt srcdir/s1 /notdir')).message).toBe(
      'When using COPY with more than one source file, the destination must be a directory and end with a /',
    );
  });

  it('a wildcard that matches nothing, a source outside the context', async () => {
    expect((await failure('COPY *.nomatch /x')).message).toBe('COPY failed: no source files were specified');
    expect((await failure('COPY ../x /y')).message).toBe('COPY failed: forbidden path outside the build context: ../x ()');
  });

  it('a directory onto a file, a file under a file', async () => {
    expect((await failure('COPY srcdir /etc/passwd')).message).toContain('not a directory');
    expect((await failure('COPY f.txt /etc/passwd/')).message).toContain('mkdir /etc/passwd: not a directory');
  });

  it('unsupported flags fail before anything runs', async () => {
    await expect(layersOf('COPY --parents f.txt /x/')).rejects.toThrow('Dockerfile:2: COPY --parents is not supported by strata');
    await expect(layersOf('COPY --exclude=*.md . /x/')).rejects.toThrow('COPY --exclude is not supported');
  });
});

describe('COPY --from', () => {
  it('copies from an earlier stage by name and by index, and from an image', async () => {
    const ctx = await makeContext({
      ...CONTEXT,
      Dockerfile: [
        'FROM base:1 AS builder',
        'COPY srcdir /out',
        'FROM scratch',
        'COPY --from=builder /out/s1 /one',
        'COPY --from=0 /out/sub /sub',
        'COPY --from=base:1 /etc/passwd /etc/',
        'COPY --from=builder /out/s* /glob/',
      ].join('\n'),
    });
    const image = await builtImage(store, (await build(store, { contextDir: ctx })).id);
    expect(image.layers).toHaveLength(4);
    expect(await layerListing(store, image.layers[0]!)).toEqual(['one file 0600 0:0']);
    expect(await layerListing(store, image.layers[1]!)).toEqual(['sub directory 0755 0:0', 'sub/s2 file 0644 0:0']);
    expect(await layerListing(store, image.layers[2]!)).toEqual(['etc directory 0755 0:0', 'etc/passwd file 0644 0:0']);
    expect(await layerListing(store, image.layers[3]!)).toEqual(['glob directory 0755 0:0', 'glob/s1 file 0600 0:0', 'glob/s2 file 0644 0:0']);
    expect(image.config.history!.map((h) => h.created_by)).toEqual([
      expect.stringMatching(/^\/bin\/sh -c #\(nop\) COPY file:[a-f0-9]{64} in \/one $/),
      expect.stringMatching(/^\/bin\/sh -c #\(nop\) COPY dir:[a-f0-9]{64} in \/sub $/),
      expect.stringMatching(/^\/bin\/sh -c #\(nop\) COPY file:[a-f0-9]{64} in \/etc\/ $/),
      expect.stringMatching(/^\/bin\/sh -c #\(nop\) COPY multi:[a-f0-9]{64} in \/glob\/ $/),
    ]);
  });

  it('keeps the owners and special bits of what it copies, unless --chown (as Docker does)', async () => {
    await makeImageFromEntries(store, 'owned:1', [
      { path: 'src', type: 'dir', uid: 1234, gid: 5678 },
      { path: 'src/suid', type: 'file', mode: 0o4755, uid: 1234, gid: 5678, content: 's' },
    ]);
    const ctx = await makeContext({ Dockerfile: 'FROM base:1\nCOPY --from=owned:1 /src /kept/\nCOPY --from=owned:1 --chown=1:2 /src /chowned/\n' });
    const image = await builtImage(store, (await build(store, { contextDir: ctx })).id);
    expect(await layerListing(store, image.layers[1]!)).toEqual(['kept directory 0755 0:0', 'kept/suid file 4755 1234:5678']);
    expect(await layerListing(store, image.layers[2]!)).toEqual(['chowned directory 0755 1:2', 'chowned/suid file 0755 1:2']);
  });

  it('refuses a missing path in the source stage', async () => {
    const ctx = await makeContext({ Dockerfile: 'FROM base:1 AS a\nFROM base:1\nCOPY --from=a /nope /x\n' });
    await expect(build(store, { contextDir: ctx })).rejects.toThrow('stat nope: file does not exist');
  });
});

describe('ADD', () => {
  let tarDir: string;
  beforeAll(async () => {
    tarDir = await makeContext({ 'td/inner': 'inner\n' });
  });

  function tarball(args: string[]): Buffer {
    return execFileSync('tar', ['--owner=42', '--group=43', '--numeric-owner', '--sort=name', '-C', tarDir, ...args, '-cf', '-', 'td']);
  }

  it('unpacks local archives (plain, gzip, bzip2, xz) keeping their owners', async () => {
    const expected = (dest: string) => [`${dest} directory 0755 0:0`, `${dest}/td directory 0755 42:43`, `${dest}/td/inner file 0644 42:43`];
    const ctx = await makeContext({ ...CONTEXT, Dockerfile: 'FROM base:1\nADD t.tar /untar/\nADD t.tgz /untgz\nADD t.tbz2 /bz/\nADD t.txz /xz/\n' });
    await writeFile(join(ctx, 't.tar'), tarball([]));
    await writeFile(join(ctx, 't.tgz'), tarball(['-z']));
    await writeFile(join(ctx, 't.tbz2'), tarball(['-j']));
    await writeFile(join(ctx, 't.txz'), tarball(['-J']));
    const image = await builtImage(store, (await build(store, { contextDir: ctx })).id);
    expect(await layerListing(store, image.layers[1]!)).toEqual(expected('untar'));
    expect(await layerListing(store, image.layers[2]!)).toEqual(expected('untgz'));
    expect(await layerListing(store, image.layers[3]!)).toEqual(expected('bz'));
    expect(await layerListing(store, image.layers[4]!)).toEqual(expected('xz'));
    expect((await layerEntries(store, image.layers[1]!))[2]!.content).toBe('inner\n');
  });

  it('copies a file that is not an archive (a gzip of a non-tar included)', async () => {
    const ctx = await makeContext({ ...CONTEXT, Dockerfile: 'FROM base:1\nADD f.txt /added.txt\nADD plain.gz /gz/\n' });
    await writeFile(join(ctx, 'plain.gz'), execFileSync('gzip', ['-c'], { input: 'not a tar\n' }));
    const image = await builtImage(store, (await build(store, { contextDir: ctx })).id);
    expect(await layerListing(store, image.layers[1]!)).toEqual(['added.txt file 0640 0:0']);
    expect(await layerListing(store, image.layers[2]!)).toEqual(['gz directory 0755 0:0', 'gz/plain.gz file 0644 0:0']);
  });

  describe('URLs', () => {
    let server: Server;
    let base: string;
    const body = 'downloaded content\n';
    beforeAll(async () => {
      server = createServer((req, res) => {
        if (req.url === '/files/remote.txt') {
          res.writeHead(200, { 'Last-Modified': 'Sat, 01 Jan 2000 00:00:00 GMT', 'Content-Type': 'text/plain' });
          res.end(body);
        } else {
          res.writeHead(404);
          res.end();
        }
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

    it('downloads into the destination: 0600, mtime from Last-Modified', async () => {
      const ctx = await makeContext({ Dockerfile: `FROM base:1\nADD ${base}/files/remote.txt /dl/\nADD ${base}/files/remote.txt /named.txt\n` });
      const image = await builtImage(store, (await build(store, { contextDir: ctx })).id);
      const entries = await layerEntries(store, image.layers[1]!);
      expect(entries.map((e) => [e.path, e.mode])).toEqual([
        ['dl', '0755'],
        ['dl/remote.txt', '0600'],
      ]);
      expect(entries[1]).toMatchObject({ content: body, mtime: Date.UTC(2000, 0, 1) / 1000 });
      expect(await layerListing(store, image.layers[2]!)).toEqual(['named.txt file 0600 0:0']);
    });

    it('verifies --checksum and reports HTTP errors', async () => {
      const good = `sha256:${createHash('sha256').update(body).digest('hex')}`;
      const ok = await makeContext({ Dockerfile: `FROM base:1\nADD --checksum=${good} ${base}/files/remote.txt /c/\n` });
      await expect(build(store, { contextDir: ok })).resolves.toBeDefined();
      const bad = await makeContext({ Dockerfile: `FROM base:1\nADD --checksum=sha256:${'0'.repeat(64)} ${base}/files/remote.txt /c/\n` });
      await expect(build(store, { contextDir: bad })).rejects.toThrow('checksum mismatch');
      const missing = await makeContext({ Dockerfile: `FROM base:1\nADD ${base}/nope.txt /c/\n` });
      await expect(build(store, { contextDir: missing })).rejects.toThrow('status 404');
      const copy = await makeContext({ Dockerfile: `FROM base:1\nCOPY ${base}/files/remote.txt /c/\n` });
      await expect(build(store, { contextDir: copy })).rejects.toThrow("source can't be a URL for COPY");
    });
  });

  it('refuses git sources before anything runs', async () => {
    const ctx = await makeContext({ Dockerfile: 'FROM base:1\nADD https://github.com/moby/moby.git /src\n' });
    await expect(build(store, { contextDir: ctx })).rejects.toThrow('Dockerfile:2: ADD of a git repository');
  });
});

describe('copied-up parents come from the layers below', () => {
  it('a directory made by an earlier step is copied up with its attributes', async () => {
    const ctx = await makeContext({ ...CONTEXT, Dockerfile: 'FROM base:1\nCOPY --chown=7:8 emptydir /made/\nCOPY f.txt /made/deeper/\n' });
    await mkdir(join(ctx, 'emptydir'), { recursive: true });
    await chmod(join(ctx, 'emptydir'), 0o755);
    const image = await builtImage(store, (await build(store, { contextDir: ctx })).id);
    expect(await layerListing(store, image.layers[2]!)).toEqual(['made directory 0755 7:8', 'made/deeper directory 0755 0:0', 'made/deeper/f.txt file 0640 0:0']);
  });
});
