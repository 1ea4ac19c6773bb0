/**
 * COPY and ADD through `strata build` against `docker build` (classic
 * builder): each case builds one fixture with both engines and compares
 * every layer's changeset (copied-up parent directories included), the
 * flattened tree and the config (test/helpers/compare.ts).
 *
 * Not compared here, because Docker 20.10's classic builder cannot do them:
 * `COPY --chmod` and `--link` ("requires BuildKit"), heredocs, ADD of bzip2
 * or xz archives (strata refuses those with a clear error instead).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, link, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, it } from 'vitest';
import type { Strata } from '../../src/strata.js';
import { expectSameBuild, openStrataWithBusybox } from '../helpers/compare.js';
import { dockerAvailable, dockerUnavailableReason } from '../helpers/docker.js';

const withDocker = dockerAvailable();

describe.skipIf(!withDocker)(`COPY and ADD, strata vs docker build${withDocker ? '' : ` (${dockerUnavailableReason()})`}`, () => {
  let work = '';
  let strata: Strata;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'strata-bd-copy-'));
    strata = await openStrataWithBusybox(work);
  });
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('COPY: files, renames, wildcards, directory contents, modes, symlinks, --chown, WORKDIR-relative', async () => {
    await expectSameBuild(
      strata,
      {
        name: 'copy',
        fixture: 'copy',
        async prepare(ctx) {
          // Modes and links git cannot carry; chmod after writing so the umask does not interfere.
          await chmod(join(ctx, 'script.sh'), 0o755);
          await chmod(join(ctx, 'setuid-tool'), 0o4755);
          await chmod(join(ctx, 'dir', 'sub'), 0o700);
          await chmod(join(ctx, 'dir', 'x'), 0o640);
          await mkdir(join(ctx, 'setgid-dir'));
          await writeFile(join(ctx, 'setgid-dir', 'f'), 'in setgid dir\n');
          await chmod(join(ctx, 'setgid-dir'), 0o2775);
          await symlink('a.txt', join(ctx, 'link-to-a'));
          await symlink('dir', join(ctx, 'dirlink'));
          await mkdir(join(ctx, 'empty'));
          await chmod(join(ctx, 'empty'), 0o750);
        },
      },
      work,
    );
  });

  it('a Dockerfile elsewhere in the context (-f), which COPY . still sees', async () => {
    await expectSameBuild(
      strata,
      {
        name: 'dockerfile-path',
        dockerfile: 'build/Dockerfile.custom',
        dockerfileText: 'FROM strata-test/busybox:latest\nCOPY . /ctx/\nCOPY build/ /build-dir/\n',
        files: { 'app.txt': 'app\n', 'build/helper.sh': { content: '#!/bin/sh\n', mode: 0o755 } },
      },
      work,
    );
  });

  it('special mode bits and owners: from the context, with --chown, COPY --from another stage, ADD of a tar', async () => {
    await expectSameBuild(
      strata,
      {
        name: 'copy-modes',
        fixture: 'copy-modes',
        async prepare(ctx) {
          await mkdir(join(ctx, 'modes'));
          const modes: [string, number][] = [['u4755', 0o4755], ['u4644', 0o4644], ['g2755', 0o2755], ['g2644', 0o2644], ['g2711', 0o2711], ['sticky1755', 0o1755]];
          for (const [name, mode] of modes) {
            await writeFile(join(ctx, 'modes', name), `${name}\n`);
            await chmod(join(ctx, 'modes', name), mode);
          }
          await mkdir(join(ctx, 'modes', 'gdir'));
          await chmod(join(ctx, 'modes', 'gdir'), 0o2755);
          execFileSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '--sort=name', '-C', join(ctx, 'modes'), '-cf', join(ctx, 'modes.tar'), '.']);
        },
      },
      work,
    );
  });

  it('.dockerignore: ** patterns, ! exceptions, directories, the Dockerfile and .dockerignore themselves', async () => {
    await expectSameBuild(strata, { name: 'dockerignore', fixture: 'dockerignore' }, work);
  });

  it('ADD: local tar and tar.gz unpack with their owners, other files copy, --chown, wildcards', async () => {
    await expectSameBuild(
      strata,
      {
        name: 'add',
        fixture: 'add',
        async prepare(ctx) {
          const src = join(ctx, 'tarsrc');
          await chmod(join(src, 'td', 'inner'), 0o600);
          await symlink('td/inner', join(src, 'link'));
          const tarArgs = ['--numeric-owner', '--owner=42', '--group=43', '--sort=name', '--mtime=2001-01-01 00:00Z', '-C', src];
          execFileSync('tar', [...tarArgs, '-cf', join(ctx, 'plain.tar'), '.']);
          execFileSync('tar', [...tarArgs, '-czf', join(ctx, 'comp.tar.gz'), 'td', 'top.txt']);
          await writeFile(join(ctx, 'notatar.gz'), gzipSync(Buffer.from('just some gzip-compressed text\n')));
          await rm(src, { recursive: true });
        },
      },
      work,
    );
  });

  it('COPY of long and unicode names, hardlinks, a multi-megabyte file, a file with file capabilities', async () => {
    await expectSameBuild(
      strata,
      {
        name: 'copy-special',
        fixture: 'copy-special',
        async prepare(ctx) {
          const deep = join(ctx, 'tree', 'a-directory-name-long-enough', 'to-push-the-whole-path-past', 'the-hundred-byte-ustar-name-field');
          await mkdir(deep, { recursive: true });
          await writeFile(join(deep, 'and-a-file-with-a-long-name-as-well.txt'), 'deep\n');
          await writeFile(join(ctx, 'tree', 'original'), 'shared inode\n');
          await link(join(ctx, 'tree', 'original'), join(ctx, 'tree', 'hardlink'));
          await link(join(ctx, 'tree', 'original'), join(deep, 'hardlink-far-away'));
          // 6 MiB of incompressible but reproducible bytes: a sha256 chain.
          const blocks: Buffer[] = [];
          let block = createHash('sha256').update('seed').digest();
          for (let i = 0; i < (6 << 20) / 32; i++) {
            blocks.push(block);
            block = createHash('sha256').update(block).digest();
          }
          await writeFile(join(ctx, 'big.bin'), Buffer.concat(blocks));
          await writeFile(join(ctx, 'with space.txt'), 'space\n');
          await writeFile(join(ctx, 'ünïcödé.txt'), 'unicode\n');
          await mkdir(join(ctx, 'capped'));
          await writeFile(join(ctx, 'capped', 'ping'), '#!/bin/sh\n');
          await chmod(join(ctx, 'capped', 'ping'), 0o755);
          execFileSync('setcap', ['cap_net_raw+ep', join(ctx, 'capped', 'ping')]);
        },
      },
      work,
    );
  });

  it('COPY to destinations through symlinks in the image, and onto a dangling link', async () => {
    await expectSameBuild(strata, { name: 'copy-symlink-dest', fixture: 'copy-symlink-dest' }, work);
  });

  describe('ADD of URLs, from a server on 127.0.0.1 (dockerd shares the host network)', () => {
    let server: Server;
    let base = '';
    const archive = gzipSync(execFileSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '--mtime=2001-01-01 00:00Z', '-cf', '-', '-C', '/etc', 'hostname', 'hosts']));
    beforeAll(async () => {
      server = createServer((req, res) => {
        const lastModified = 'Wed, 01 Jan 2020 00:00:00 GMT';
        if (req.url === '/files/hello.txt') res.writeHead(200, { 'Content-Type': 'text/plain', 'Last-Modified': lastModified }).end('hello from the server\n');
        else if (req.url === '/files/archive.tar.gz') res.writeHead(200, { 'Content-Type': 'application/gzip', 'Last-Modified': lastModified }).end(archive);
        else if (req.url === '/files/no-name/') res.writeHead(200, { 'Content-Type': 'text/plain' }).end('a URL path without a file name\n');
        else res.writeHead(404).end();
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterAll(async () => {
      await new Promise((resolve) => server?.close(resolve));
    });

    it('downloads into a directory (name from the URL) and to a file name; archives from URLs are not unpacked', async () => {
      await expectSameBuild(
        strata,
        {
          name: 'add-url',
          dockerfileText: [
            'FROM strata-test/busybox:latest',
            `ADD ${base}/files/hello.txt /downloads/`,
            `ADD ${base}/files/hello.txt /downloads/renamed.txt`,
            `ADD ${base}/files/archive.tar.gz /downloads/`,
            `ADD --chown=nobody:nobody ${base}/files/hello.txt /owned/`,
            '',
          ].join('\n'),
        },
        work,
      );
    });
  });
});
