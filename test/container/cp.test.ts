/**
 * cp: Docker's rules and messages both ways (checked against Docker 20.10),
 * writes through ContainerFs, and symlinks never leading out of the root.
 */
import { createHash } from 'node:crypto';
import { chmod, chown, link, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFromContainer, copyToContainer, statContainerPath } from '../../src/container/cp.js';
import { diff, formatChanges } from '../../src/container/diff.js';
import { ContainerFs } from '../../src/container/fs.js';
import type { Container } from '../../src/container/container-store.js';
import { packEntries } from '../../src/tar/write.js';
import { readTar } from '../../src/tar/read.js';
import { execFileAsync, isRoot, makeFixtureImage, sandbox, type Sandbox } from './helpers.js';
import { readTreeXattrs } from '../../src/tar/walk.js';

let sb: Sandbox;
let host: string;

beforeAll(async () => {
  sb = await sandbox();
  await makeFixtureImage(sb.images, sb.dir);
  host = join(sb.dir, 'host');
  await mkdir(join(host, 'dir/sub'), { recursive: true });
  await writeFile(join(host, 'file.txt'), 'host file\n');
  await writeFile(join(host, 'dir/a'), 'a\n');
  await writeFile(join(host, 'dir/sub/b'), 'b\n');
  await chmod(join(host, 'dir/sub'), 0o700);
  await chown(join(host, 'dir/a'), 123, 456);
  await symlink('file.txt', join(host, 'link'));
  await symlink('a', join(host, 'dir/link-to-a'));
  await link(join(host, 'dir/a'), join(host, 'dir/hard-a'));
  await execFileAsync('setfattr', ['-n', 'user.origin', '-v', 'host', join(host, 'dir/a')]);
});

afterAll(async () => {
  await sb.cleanup();
});

async function entries(stream: NodeJS.ReadableStream): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of readTar(stream)) {
    const body = await readBody(entry.body);
    out.push(`${entry.header.path} ${entry.header.type}${entry.header.type === 'file' ? ` ${body}` : ''}${entry.header.linkname ? ` -> ${entry.header.linkname}` : ''}`);
  }
  return out;
}

async function readBody(body: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of body as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8').trim();
}

async function container(): Promise<{ c: Container; fsys: () => Promise<ContainerFs> }> {
  const c = await sb.containers.create('fixture:1');
  return { c, fsys: () => ContainerFs.open(c) };
}

describe.skipIf(!isRoot)('copying out of a container (needs root)', () => {
  it('archives a path under its own name, or a directory’s contents with /.', async () => {
    const { c } = await container();
    expect(await entries(await copyFromContainer(c, '/app'))).toEqual(['app directory', 'app/app.py file print("hello")']);
    expect(await entries(await copyFromContainer(c, '/app/.'))).toEqual(['app.py file print("hello")']);
    expect(await entries(await copyFromContainer(c, '/etc/conf'))).toEqual(['conf file conf v3']);
  });

  it('copies a final symlink as a link, or its target with followLink', async () => {
    const { c } = await container();
    expect(await entries(await copyFromContainer(c, '/bin/tool-link'))).toEqual(['tool-link symlink -> tool']);
    expect(await entries(await copyFromContainer(c, '/bin/tool-link', { followLink: true }))).toEqual(['tool file #!/bin/sh\necho tool']);
    // Intermediate symlinks resolve inside the root, however they climb.
    expect(await entries(await copyFromContainer(c, '/evil/conf'))).toEqual(['conf file conf v3']);
    expect((await statContainerPath(c, '/evil')).linkTarget).toBe('/etc');
  });

  it('says what is missing the way Docker does', async () => {
    const { c } = await container();
    await expect(copyFromContainer(c, '/nonexist')).rejects.toThrow(`Could not find the file /nonexist in container ${c.name}`);
    await expect(copyFromContainer(c, '/etc/conf/')).rejects.toThrow(/not a directory/);
  });

  it('sees the container’s changes', async () => {
    const { c, fsys } = await container();
    const f = await fsys();
    await f.writeFile('/app/new.py', 'new');
    await f.rm('/app/app.py');
    expect(await entries(await copyFromContainer(c, '/app'))).toEqual(['app directory', 'app/new.py file new']);
  });
});

describe.skipIf(!isRoot)('copying into a container (needs root)', () => {
  it('follows Docker’s destination rules for a host file', async () => {
    const { c, fsys } = await container();
    await copyToContainer(c, '/app', { hostPath: join(host, 'file.txt') });
    await copyToContainer(c, '/app/renamed.txt', { hostPath: join(host, 'file.txt') });
    await copyToContainer(c, '/etc/conf', { hostPath: join(host, 'file.txt') });
    const f = await fsys();
    expect(await f.readFile('/app/file.txt', 'utf8')).toBe('host file\n');
    expect(await f.readFile('/app/renamed.txt', 'utf8')).toBe('host file\n');
    expect(await f.readFile('/etc/conf', 'utf8')).toBe('host file\n');
    await expect(copyToContainer(c, '/nodir/', { hostPath: join(host, 'file.txt') })).rejects.toThrow('no such directory');
    await expect(copyToContainer(c, '/nodir/x', { hostPath: join(host, 'file.txt') })).rejects.toThrow(`Could not find the file /nodir in container ${c.name}`);
    await expect(copyToContainer(c, '/etc/conf/x', { hostPath: join(host, 'file.txt') })).rejects.toThrow('extraction point is not a directory');
  });

  it('follows Docker’s destination rules for a host directory', async () => {
    const { c, fsys } = await container();
    await copyToContainer(c, '/newdir', { hostPath: join(host, 'dir') });
    await copyToContainer(c, '/app', { hostPath: join(host, 'dir') });
    await copyToContainer(c, '/opq', { hostPath: `${join(host, 'dir')}/.` });
    const f = await fsys();
    expect(await f.readdir('/newdir')).toEqual(['a', 'hard-a', 'link-to-a', 'sub']);
    expect(await f.readFile('/app/dir/sub/b', 'utf8')).toBe('b\n');
    expect(await f.readdir('/opq')).toEqual(['a', 'hard-a', 'link-to-a', 'new', 'sub']);
    expect(await f.readlink('/newdir/link-to-a')).toBe('a');
    expect((await f.stat('/newdir/hard-a')).ino).toBe((await f.stat('/newdir/a')).ino);
    expect((await readTreeXattrs(c.upperDir))!.get('newdir/a')?.['user.origin']?.toString()).toBe('host');
    expect((await readTreeXattrs(c.upperDir))!.get('opq/a')?.['user.origin']?.toString()).toBe('host');
    expect((await f.stat('/newdir/sub')).mode & 0o777).toBe(0o700);
    const a = await f.stat('/newdir/a');
    expect([a.uid, a.gid]).toEqual([123, 456]);
    await expect(copyToContainer(c, '/etc/conf', { hostPath: join(host, 'dir') })).rejects.toThrow('cannot copy directory');
    await expect(copyToContainer(c, '/etc/conf', { hostPath: join(host, 'nope') })).rejects.toThrow(/no such file or directory/);
  });

  it('copies a host symlink as a link, or its target with followLink', async () => {
    const { c, fsys } = await container();
    await copyToContainer(c, '/app', { hostPath: join(host, 'link') });
    await copyToContainer(c, '/etc', { hostPath: join(host, 'link') }, { followLink: true });
    const f = await fsys();
    expect(await f.readlink('/app/link')).toBe('file.txt');
    expect(await f.readFile('/etc/link', 'utf8')).toBe('host file\n');
  });

  it('extracts a tar stream into an existing directory only', async () => {
    const { c, fsys } = await container();
    const tar = () =>
      packEntries([
        { header: { path: 'x', type: 'directory', mode: 0o750, uid: 7, gid: 8, mtime: 1_600_000_000, size: 0 } },
        { header: { path: 'x/y', type: 'file', mode: 0o600, uid: 7, gid: 8, mtime: 1_600_000_000, size: 2 }, content: () => Buffer.from('yy') },
        { header: { path: 'x/z', type: 'hardlink', mode: 0o600, uid: 7, gid: 8, mtime: 1_600_000_000, size: 0, linkname: 'x/y' } },
      ]);
    await copyToContainer(c, '/app', tar());
    const f = await fsys();
    const y = await f.stat('/app/x/y');
    expect([y.uid, y.gid, y.mode & 0o777, y.mtime.getTime() / 1000]).toEqual([7, 8, 0o600, 1_600_000_000]);
    expect((await f.stat('/app/x')).mtime.getTime() / 1000).toBe(1_600_000_000);
    expect((await f.stat('/app/x/z')).ino).toBe(y.ino);
    await expect(copyToContainer(c, '/etc/conf', tar())).rejects.toThrow(`destination "${c.name}:/etc/conf" must be a directory`);
    await expect(copyToContainer(c, '/missing', tar())).rejects.toThrow('must be a directory');
    // A directory is never replaced by a file, nor the reverse.
    await expect(
      copyToContainer(c, '/', packEntries([{ header: { path: 'etc', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 0 } }])),
    ).rejects.toThrow('cannot overwrite directory "/etc" with non-directory "etc"');
    await expect(
      copyToContainer(c, '/etc', packEntries([{ header: { path: 'conf', type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: 0, size: 0 } }])),
    ).rejects.toThrow('cannot overwrite non-directory "/etc/conf" with directory "conf"');
  });

  it('writes through a container symlink only inside the root', async () => {
    const { c, fsys } = await container();
    const before = createHash('sha256').update(await readFile('/etc/passwd')).digest('hex');
    await copyToContainer(c, '/evil', { hostPath: join(host, 'file.txt') });
    await copyToContainer(c, '/evil/passwd', { hostPath: join(host, 'file.txt') });
    expect(createHash('sha256').update(await readFile('/etc/passwd')).digest('hex')).toBe(before);
    const f = await fsys();
    expect(await f.readFile('/etc/file.txt', 'utf8')).toBe('host file\n');
    expect(await f.readFile('/etc/passwd', 'utf8')).toBe('host file\n');
  });

  it('changes the upper dir as a process would (copy-up, parents), and -a uses the container’s user', async () => {
    const c = await sb.containers.create('fixture:1', { user: 'app' });
    await copyToContainer(c, '/etc/conf', { hostPath: join(host, 'file.txt') }, { copyUIDGID: true });
    await copyToContainer(c, '/data/sub', { hostPath: join(host, 'file.txt') }, { copyUIDGID: true });
    expect(formatChanges(await diff(c))).toBe('C /data\nC /data/sub\nA /data/sub/file.txt\nC /etc\nC /etc/conf\n');
    const f = await ContainerFs.open(c);
    const st = await f.stat('/data/sub/file.txt');
    expect([st.uid, st.gid]).toEqual([1000, 1000]);
  });
});

describe.skipIf(!isRoot)('copying with a running container', () => {
  it('pauses it for the copy, as Docker does, or refuses without a way to', async () => {
    const { c } = await container();
    const { spawn } = await import('node:child_process');
    const child = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      await sb.containers.update(c.id, (r) => {
        r.State = { ...r.State, Status: 'running', Pid: child.pid! };
      });
      await expect(copyToContainer(c, '/app', { hostPath: join(host, 'file.txt') })).rejects.toThrow(/without pausing it/);
      await expect(copyFromContainer(c, '/app')).rejects.toThrow(/without pausing it/);
      const calls: string[] = [];
      const pauser = { pause: async () => void calls.push('pause'), resume: async () => void calls.push('resume') };
      await copyToContainer(c, '/app', { hostPath: join(host, 'file.txt') }, { pauser });
      expect(calls).toEqual(['pause', 'resume']);
      const tar = await copyFromContainer(c, '/app/file.txt', { pauser });
      expect(calls).toEqual(['pause', 'resume', 'pause']);
      expect(await entries(tar)).toEqual(['file.txt file host file']);
      await new Promise((resolve) => setImmediate(resolve));
      expect(calls).toEqual(['pause', 'resume', 'pause', 'resume']);
      await copyToContainer(c, '/app', { hostPath: join(host, 'file.txt') }, { pause: false });
    } finally {
      child.kill('SIGKILL');
    }
  });
});
