import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ensureBindSource,
  MountSpecError,
  parseMountFlag,
  parseVolumeFlag,
  validateMounts,
  type MountSpec,
} from '../../src/volume/mountspec.js';

const scratch = mkdtempSync(join(tmpdir(), 'strata-mountspec-'));
const hostDir = join(scratch, 'host');
const hostFile = join(scratch, 'file');
mkdirSync(join(hostDir, 'sub'), { recursive: true });
writeFileSync(hostFile, 'x');
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const INVALID_CHARS = (name: string): string =>
  `create ${name}: "${name}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`;

/** Where a message comes from: the docker CLI itself, or the daemon (or strata's stand-in for it). */
type Stage = 'cli' | 'daemon';

interface ErrorCase {
  value: string;
  error: string;
  stage: Stage;
}

const volumeFlagErrors: ErrorCase[] = [
  { value: '', error: 'invalid empty volume spec', stage: 'cli' },
  { value: ':/test', error: 'invalid spec: :/test: empty section between colons', stage: 'cli' },
  { value: '/tmp:', error: 'invalid spec: /tmp:: empty section between colons', stage: 'cli' },
  { value: '/a::/b', error: 'invalid spec: /a::/b: empty section between colons', stage: 'cli' },
  { value: '/a:/b:ro:x', error: 'invalid spec: /a:/b:ro:x: too many colons', stage: 'cli' },
  // The CLI reads "a:" as a Windows drive, so only the daemon sees four parts.
  { value: 'a:b:c:d', error: "invalid volume specification: 'a:b:c:d'", stage: 'daemon' },
  { value: '/path:rw', error: "invalid volume specification: '/path:rw'", stage: 'daemon' },
  { value: 'path:ro', error: "invalid volume specification: 'path:ro'", stage: 'daemon' },
  { value: '/path:shared', error: "invalid volume specification: '/path:shared'", stage: 'daemon' },
  { value: '/path:/path:sw', error: 'invalid mode: sw', stage: 'daemon' },
  { value: '/path:/path:rwz', error: 'invalid mode: rwz', stage: 'daemon' },
  { value: '/path:/path:ro,rw', error: 'invalid mode: ro,rw', stage: 'daemon' },
  { value: '/path:/path:ro,rshared,rslave', error: 'invalid mode: ro,rshared,rslave', stage: 'daemon' },
  { value: '/path:/path:z,Z', error: 'invalid mode: z,Z', stage: 'daemon' },
  {
    value: 'foo:x',
    error: `invalid volume specification: 'foo:x': invalid mount config for type "volume": invalid mount path: 'x' mount path must be absolute`,
    stage: 'daemon',
  },
  {
    value: 'rel/dir',
    error: `invalid volume specification: 'rel/dir': invalid mount config for type "volume": invalid mount path: 'rel/dir' mount path must be absolute`,
    stage: 'daemon',
  },
  {
    value: '/',
    error: `invalid volume specification: '/': invalid mount config for type "volume": invalid specification: destination can't be '/'`,
    stage: 'daemon',
  },
  {
    value: '/host:/',
    error: `invalid volume specification: '/host:/': invalid mount config for type "bind": invalid specification: destination can't be '/'`,
    stage: 'daemon',
  },
  {
    value: '/host:/a/..',
    error: `invalid volume specification: '/host:/a/..': invalid mount config for type "bind": invalid specification: destination can't be '/'`,
    stage: 'daemon',
  },
  {
    value: 'name:/abs:shared',
    error: `invalid volume specification: 'name:/abs:shared': invalid mount config for type "volume": field BindOptions must not be specified`,
    stage: 'daemon',
  },
  {
    value: '/host:/abs:nocopy',
    error: `invalid volume specification: '/host:/abs:nocopy': invalid mount config for type "bind": field VolumeOptions must not be specified`,
    stage: 'daemon',
  },
  { value: '~/x:/y', error: INVALID_CHARS('~/x'), stage: 'daemon' },
  { value: '../x:/y', error: INVALID_CHARS('../x'), stage: 'daemon' },
  { value: 'my vol:/y', error: INVALID_CHARS('my vol'), stage: 'daemon' },
  { value: '_vol:/y', error: INVALID_CHARS('_vol'), stage: 'daemon' },
  { value: 'é:/y', error: INVALID_CHARS('é'), stage: 'daemon' },
  { value: '7:/y', error: 'create 7: volume name is too short, names should be at least two alphanumeric characters', stage: 'daemon' },
];

const mountFlagErrors: ErrorCase[] = [
  { value: '', error: 'EOF', stage: 'cli' },
  { value: 'foo', error: "invalid field 'foo' must be a key=value pair", stage: 'cli' },
  { value: 'target=/x, ro', error: "invalid field ' ro' must be a key=value pair", stage: 'cli' },
  { value: 'target=/x,volume-label', error: "invalid field 'volume-label' must be a key=value pair", stage: 'cli' },
  { value: 'foo=bar', error: "unexpected key 'foo' in 'foo=bar'", stage: 'cli' },
  { value: 'Foo=bar', error: "unexpected key 'foo' in 'Foo=bar'", stage: 'cli' },
  { value: 'type=bind', error: 'target is required', stage: 'cli' },
  { value: 'target=', error: 'target is required', stage: 'cli' },
  { value: 'type=,target=/x', error: 'type is required', stage: 'cli' },
  { value: 'target=/x,ro=maybe', error: 'invalid value for ro: maybe', stage: 'cli' },
  { value: 'target=/x,readonly=2', error: 'invalid value for readonly: 2', stage: 'cli' },
  { value: 'target=/x,ro= true', error: 'invalid value for ro:  true', stage: 'cli' },
  { value: 'target=/x,volume-nocopy=maybe', error: 'invalid value for volume-nocopy: maybe', stage: 'cli' },
  { value: 'type=bind,target=/x,bind-nonrecursive=maybe', error: 'invalid value for bind-nonrecursive: maybe', stage: 'cli' },
  { value: 'target=/x,tmpfs-size=abc', error: 'invalid value for tmpfs-size: abc', stage: 'cli' },
  { value: 'type=tmpfs,target=/x,tmpfs-size=-1', error: 'invalid value for tmpfs-size: -1', stage: 'cli' },
  { value: 'type=tmpfs,target=/x,tmpfs-size=1x', error: 'invalid value for tmpfs-size: 1x', stage: 'cli' },
  { value: 'type=tmpfs,target=/x,tmpfs-size=1mbb', error: 'invalid value for tmpfs-size: 1mbb', stage: 'cli' },
  { value: 'type=tmpfs,target=/x,tmpfs-size=1kb2', error: 'invalid value for tmpfs-size: 1kb2', stage: 'cli' },
  { value: 'target=/x,tmpfs-mode=9', error: 'invalid value for tmpfs-mode: 9', stage: 'cli' },
  { value: 'target=/x,tmpfs-mode=-7', error: 'invalid value for tmpfs-mode: -7', stage: 'cli' },
  {
    value: 'target=/x,bind-recursive=foo',
    error: 'invalid value for bind-recursive: foo (must be "enabled", "disabled", "writable", or "readonly")',
    stage: 'cli',
  },
  { value: 'type=volume,target=/x,bind-propagation=shared', error: "cannot mix 'bind-*' options with mount type 'volume'", stage: 'cli' },
  { value: 'target=/x,bind-nonrecursive', error: "cannot mix 'bind-*' options with mount type 'volume'", stage: 'cli' },
  { value: 'type=tmpfs,target=/x,volume-nocopy', error: "cannot mix 'volume-*' options with mount type 'tmpfs'", stage: 'cli' },
  { value: 'type=bind,target=/x,volume-nocopy=false', error: "cannot mix 'volume-*' options with mount type 'bind'", stage: 'cli' },
  { value: 'target=/x,tmpfs-mode=700', error: "cannot mix 'tmpfs-*' options with mount type 'volume'", stage: 'cli' },
  {
    value: 'type=bind,target=/x,bind-recursive=writable',
    error: "option 'bind-recursive=writable' requires 'readonly' to be specified in conjunction",
    stage: 'cli',
  },
  {
    value: 'type=bind,target=/x,bind-recursive=readonly',
    error: "option 'bind-recursive=readonly' requires 'readonly' to be specified in conjunction",
    stage: 'cli',
  },
  {
    value: 'type=bind,target=/x,ro,bind-recursive=readonly',
    error: "option 'bind-recursive=readonly' requires 'bind-propagation=rprivate' to be specified in conjunction",
    stage: 'cli',
  },
  { value: '"target=/x,ro', error: 'parse error on line 1, column 14: extraneous or missing " in quoted-field', stage: 'cli' },
  { value: 'target=/x,a"b', error: 'parse error on line 1, column 12: bare " in non-quoted-field', stage: 'cli' },
  { value: '"a"b,target=/x', error: 'parse error on line 1, column 3: extraneous or missing " in quoted-field', stage: 'cli' },
  {
    value: '"target=/x\nfoo',
    error: 'record on line 1; parse error on line 2, column 4: extraneous or missing " in quoted-field',
    stage: 'cli',
  },
  {
    value: '\n\ntarget=/x,"ro\n"x',
    error: 'record on line 3; parse error on line 4, column 1: extraneous or missing " in quoted-field',
    stage: 'cli',
  },
  {
    value: 'type=bind,src=/nonexistent-strata-mountspec,target=/x',
    error: 'invalid mount config for type "bind": bind source path does not exist: /nonexistent-strata-mountspec',
    stage: 'daemon',
  },
  {
    value: `type=bind,src=${hostFile}/sub,target=/x`,
    error: `invalid mount config for type "bind": stat ${hostFile}/sub: not a directory`,
    stage: 'daemon',
  },
  { value: 'type=bind,target=/x', error: 'invalid mount config for type "bind": field Source must not be empty', stage: 'daemon' },
  {
    value: 'type=bind,src=rel,target=/x',
    error: `invalid mount config for type "bind": invalid mount path: 'rel' mount path must be absolute`,
    stage: 'daemon',
  },
  {
    value: `type=bind,src=${hostDir},target=/x,bind-propagation=foo`,
    error: 'invalid mount config for type "bind": invalid propagation mode: foo',
    stage: 'daemon',
  },
  {
    value: 'target=x',
    error: `invalid mount config for type "volume": invalid mount path: 'x' mount path must be absolute`,
    stage: 'daemon',
  },
  {
    value: 'target=/',
    error: `invalid mount config for type "volume": invalid specification: destination can't be '/'`,
    stage: 'daemon',
  },
  {
    value: 'type=tmpfs,target=//',
    error: `invalid mount config for type "tmpfs": invalid specification: destination can't be '/'`,
    stage: 'daemon',
  },
  {
    value: 'target=/x,ro',
    error: 'invalid mount config for type "volume": must not set ReadOnly mode when using anonymous volumes',
    stage: 'daemon',
  },
  {
    value: 'target=/x,volume-subpath=a',
    error: 'invalid mount config for type "volume": must not set Subpath when using anonymous volumes',
    stage: 'daemon',
  },
  {
    value: 'src=v1,target=/x,volume-subpath=../a',
    error: 'invalid mount config for type "volume": subpath must be a relative path within the volume',
    stage: 'daemon',
  },
  {
    value: 'src=v1,target=/x,volume-subpath=/a',
    error: 'invalid mount config for type "volume": subpath must be a relative path within the volume',
    stage: 'daemon',
  },
  {
    value: 'type=tmpfs,src=foo,target=/x',
    error: 'invalid mount config for type "tmpfs": field Source must not be specified',
    stage: 'daemon',
  },
  { value: 'type=foo,target=/x', error: 'invalid mount config for type "foo": mount type unknown', stage: 'daemon' },
  { value: 'type=npipe,src=x,target=/x', error: 'invalid mount config for type "npipe": mount type unknown', stage: 'daemon' },
  {
    value: 'type=image,src=alpine,target=/x',
    error: 'invalid mount config for type "image": image mounts are not supported by strata',
    stage: 'daemon',
  },
  { value: 'src=a b,target=/x', error: INVALID_CHARS('a b'), stage: 'daemon' },
  { value: 'src=x,target=/y', error: 'create x: volume name is too short, names should be at least two alphanumeric characters', stage: 'daemon' },
  { value: 'src=/abs,target=/y', error: INVALID_CHARS('/abs'), stage: 'daemon' },
];

function errorOf(fn: () => unknown): MountSpecError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(MountSpecError);
    return err as MountSpecError;
  }
  throw new Error('expected an error');
}

describe('-v / --volume', () => {
  const cases: Array<[string, Partial<MountSpec>]> = [
    ['myvol:/data', { type: 'volume', source: 'myvol', target: '/data', readOnly: false, noCopy: false, createHostPath: false }],
    ['/host:/data', { type: 'bind', source: '/host', target: '/data', propagation: 'rprivate', bindRecursive: 'enabled', createHostPath: true }],
    ['/data', { type: 'volume', source: undefined, target: '/data', readOnly: false }],
    ['/data/', { type: 'volume', target: '/data', targetAsGiven: '/data/' }],
    ['/host/./x/:/data/./y/../z/:ro', { type: 'bind', source: '/host/x', target: '/data/z', readOnly: true }],
    ['myvol:/data:ro,nocopy', { type: 'volume', readOnly: true, noCopy: true }],
    ['myvol:/data:rw', { readOnly: false }],
    ['/h:/c:rshared,Z', { type: 'bind', propagation: 'rshared', selinuxRelabel: 'Z' }],
    ['/h:/c:z,ro,slave', { propagation: 'slave', selinuxRelabel: 'z', readOnly: true }],
    ['/h:/c:cached', { consistency: 'cached' }],
    ['/with space:/with space', { source: '/with space', target: '/with space' }],
    ['a.b-c_d:/x', { type: 'volume', source: 'a.b-c_d' }],
  ];

  it.each(cases)('parses %j', (value, expected) => {
    const spec = parseVolumeFlag(value);
    const { source, ...rest } = expected;
    expect(spec).toMatchObject({ ...rest, raw: value, syntax: 'volume' });
    if ('source' in expected) expect(spec.source).toBe(source);
  });

  it('resolves ./relative and . host paths against cwd, as the docker CLI does', () => {
    expect(parseVolumeFlag('./data:/c', { cwd: '/work/app' })).toMatchObject({ type: 'bind', source: '/work/app/data', createHostPath: true });
    expect(parseVolumeFlag('.:/c', { cwd: '/work/app' })).toMatchObject({ type: 'bind', source: '/work/app' });
    expect(parseVolumeFlag('./a/../b/:/c:ro', { cwd: '/w' })).toMatchObject({ source: '/w/b', readOnly: true });
  });

  it.each(volumeFlagErrors.map((c) => [c.value, c.error] as const))('refuses %j', (value, message) => {
    expect(errorOf(() => parseVolumeFlag(value)).message).toBe(message);
  });

  it('accepts any valid name with any absolute target, cleaning the target', () => {
    const name = fc.stringMatching(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,30}$/);
    const segment = fc.stringMatching(/^[a-z0-9._-]{1,8}$/).filter((s) => s !== '.' && s !== '..');
    const target = fc.array(segment, { minLength: 1, maxLength: 5 }).map((parts) => '/' + parts.join('/'));
    fc.assert(
      fc.property(name, target, fc.boolean(), (n, t, slash) => {
        const spec = parseVolumeFlag(`${n}:${t}${slash ? '/' : ''}`);
        expect(spec).toMatchObject({ type: 'volume', source: n, target: t });
      }),
    );
  });

  it('fails only with MountSpecError, whatever the input', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(':', '/', 'a', 'b', ',', 'r', 'o', '.', '~', 'z', ' ') }), (value) => {
        try {
          parseVolumeFlag(value);
        } catch (err) {
          expect(err).toBeInstanceOf(MountSpecError);
        }
      }),
    );
  });
});

describe('--mount', () => {
  it('parses volumes, named and anonymous', () => {
    expect(parseMountFlag('type=volume,source=myvol,target=/data')).toMatchObject({
      type: 'volume',
      source: 'myvol',
      target: '/data',
      readOnly: false,
      noCopy: false,
      createHostPath: false,
      syntax: 'mount',
    });
    const anon = parseMountFlag('target=/data');
    expect(anon.type).toBe('volume');
    expect(anon.source).toBeUndefined();
    expect(parseMountFlag('src=v1,dst=/d,readonly,volume-nocopy')).toMatchObject({ readOnly: true, noCopy: true });
    expect(parseMountFlag('src=v1,destination=/d,ro=false,volume-nocopy=0')).toMatchObject({ readOnly: false, noCopy: false });
    expect(parseMountFlag('src=v1,target=/d,volume-subpath=sub/dir')).toMatchObject({ subpath: 'sub/dir' });
  });

  it('collects volume labels, driver and options', () => {
    const spec = parseMountFlag('target=/d,src=vol,volume-label=a=b,volume-label=c,volume-label==x,volume-opt=type=tmpfs,volume-driver=local');
    expect(spec.labels).toEqual({ a: 'b', c: '' });
    expect(spec.volumeOptions).toEqual({ type: 'tmpfs' });
    expect(spec.volumeDriver).toBe('local');
  });

  it('parses binds', () => {
    expect(parseMountFlag(`type=bind,src=${hostDir},dst=/c,readonly`)).toMatchObject({
      type: 'bind',
      source: hostDir,
      target: '/c',
      readOnly: true,
      createHostPath: false,
      propagation: 'rprivate',
      bindRecursive: 'enabled',
    });
    expect(parseMountFlag(`type=bind,source=${hostDir}/,target=/c,bind-propagation=RSHARED,bind-recursive=disabled`)).toMatchObject({
      source: hostDir,
      propagation: 'rshared',
      bindRecursive: 'disabled',
    });
    expect(
      parseMountFlag(`type=bind,src=${hostDir},target=/c,readonly,bind-recursive=readonly,bind-propagation=rprivate`),
    ).toMatchObject({ bindRecursive: 'readonly', readOnly: true });
    expect(parseMountFlag(`type=bind,src=${hostDir},target=/c,ro=1,bind-recursive=writable`)).toMatchObject({ bindRecursive: 'writable' });
    // Keys are case-insensitive and the type value is lower-cased; CSV quoting protects commas.
    expect(parseMountFlag(`TYPE=Bind,Src=${hostDir},"target=/with,comma",consistency=Cached`)).toMatchObject({
      type: 'bind',
      target: '/with,comma',
      consistency: 'cached',
    });
    expect(parseMountFlag(`"type=bind","src=${hostDir}","target=/a""b"`).target).toBe('/a"b');
    // A quote inside an unquoted field is Go's "bare quote" error.
    expect(errorOf(() => parseMountFlag(`type=bind,src=${hostDir},target="/a"`)).message).toBe(
      'parse error on line 1, column ' + (`type=bind,src=${hostDir},target=`.length + 1) + ': bare " in non-quoted-field',
    );
  });

  it('warns about bind-nonrecursive=<bool> like the CLI does', () => {
    const spec = parseMountFlag(`type=bind,src=${hostDir},target=/c,bind-nonrecursive=true`);
    expect(spec.bindRecursive).toBe('disabled');
    expect(spec.warnings).toEqual(['bind-nonrecursive is deprecated, use bind-recursive=disabled instead']);
  });

  it('resolves ./relative and . sources against cwd', () => {
    expect(parseMountFlag('type=bind,src=./sub,target=/c', { cwd: hostDir }).source).toBe(join(hostDir, 'sub'));
    expect(parseMountFlag('type=bind,src=.,target=/c', { cwd: hostDir }).source).toBe(hostDir);
  });

  it('can leave the bind source check to container start', () => {
    const spec = parseMountFlag('type=bind,src=/nonexistent-strata-mountspec,target=/x', { checkBindSource: false });
    expect(spec).toMatchObject({ source: '/nonexistent-strata-mountspec', createHostPath: false });
  });

  it('parses tmpfs sizes with go-units RAMInBytes rules and octal modes', () => {
    expect(parseMountFlag('type=tmpfs,target=/run,tmpfs-size=64m,tmpfs-mode=1777')).toMatchObject({
      type: 'tmpfs',
      target: '/run',
      tmpfs: { size: 64 * 1024 * 1024, mode: 0o1777 },
    });
    const size = (s: string): number | undefined => parseMountFlag(`type=tmpfs,dst=/t,tmpfs-size=${s}`).tmpfs?.size;
    expect(size('1.5k')).toBe(1536);
    expect(size('512KiB')).toBe(512 * 1024);
    expect(size('100 MB')).toBe(100 * 1024 * 1024);
    expect(size('2G')).toBe(2 * 1024 ** 3);
    expect(size('1000')).toBe(1000);
    expect(size('10b')).toBe(10);
    expect(size('1e3')).toBe(1000);
    // Zero means unset in Docker's API.
    expect(parseMountFlag('type=tmpfs,dst=/t,tmpfs-size=0,tmpfs-mode=0').tmpfs).toBeUndefined();
    expect(parseMountFlag('type=tmpfs,dst=/t,ro').readOnly).toBe(true);
  });

  it.each(mountFlagErrors.map((c) => [c.value, c.error] as const))('refuses %j', (value, message) => {
    expect(errorOf(() => parseMountFlag(value)).message).toBe(message);
  });

  it('fails only with MountSpecError, whatever the input', () => {
    const piece = fc.constantFrom('type=', 'bind', 'volume', 'tmpfs', 'src=', 'target=', '/x', ',', '"', 'ro', '=', 'bind-', 'volume-', 'tmpfs-size=', '1k', '\n');
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 12 }), (parts) => {
        try {
          parseMountFlag(parts.join(''), { checkBindSource: false });
        } catch (err) {
          expect(err).toBeInstanceOf(MountSpecError);
        }
      }),
    );
  });
});

describe('validateMounts', () => {
  const v = (value: string): MountSpec => parseVolumeFlag(value);
  const m = (value: string): MountSpec => parseMountFlag(value, { checkBindSource: false });

  it('counts the same -v string once', () => {
    expect(validateMounts([v('/h:/x'), v('/h:/x')])).toHaveLength(1);
  });

  it('refuses two binds at one destination', () => {
    expect(errorOf(() => validateMounts([v('vol1:/x'), v('/h:/x/')])).message).toBe('Duplicate mount point: /x');
  });

  it('reports a --mount duplicate with its target as written', () => {
    const err = errorOf(() => validateMounts([m('type=bind,src=/h,target=/x/'), v('/h:/x')]));
    expect(err.message).toBe('Duplicate mount point: /x/');
    expect(err.code).toBe('DUPLICATE_MOUNT_POINT');
    expect(errorOf(() => validateMounts([m('target=/y'), m('src=vol,target=/y')])).message).toBe('Duplicate mount point: /y');
  });

  it('lets a bind or --mount replace an anonymous -v at the same destination', () => {
    const anonymous = v('/data');
    const named = v('vol:/data');
    expect(validateMounts([anonymous, named])).toEqual([named]);
    const tmpfs = m('type=tmpfs,target=/data/');
    expect(validateMounts([anonymous, tmpfs])).toEqual([tmpfs]);
    expect(validateMounts([v('/data'), v('/data/'), v('/other')]).map((s) => s.raw)).toEqual(['/data', '/other']);
  });
});

describe('ensureBindSource', () => {
  it('creates a missing -v host path with mode 0755', async () => {
    const path = join(scratch, 'made', 'by', 'v');
    await ensureBindSource(parseVolumeFlag(`${path}:/c`));
    expect(statSync(path).isDirectory()).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o755);
  });

  it('refuses a missing --mount host path', async () => {
    const spec = parseMountFlag('type=bind,src=/nonexistent-strata-mountspec,target=/x', { checkBindSource: false });
    await expect(ensureBindSource(spec)).rejects.toThrow('invalid mount config for type "bind": bind source path does not exist: /nonexistent-strata-mountspec');
  });

  it('leaves an existing source and non-binds alone', async () => {
    await ensureBindSource(parseMountFlag(`type=bind,src=${hostDir},target=/x`));
    await ensureBindSource(parseVolumeFlag('vol:/x'));
  });
});

// The docker CLI is the reference for its own half of the parsing. It is run with
// a DOCKER_HOST that does not exist, so nothing ever reaches a daemon: values the
// CLI accepts end in "Cannot connect to the Docker daemon".
const hasDockerCli = spawnSync('docker', ['--version']).status === 0;
describe.skipIf(!hasDockerCli)('agreement with the installed docker CLI (needs the docker binary)', () => {
  const dockerConfig = mkdtempSync(join(tmpdir(), 'strata-dockercfg-'));
  afterAll(() => rmSync(dockerConfig, { recursive: true, force: true }));
  const dockerRun = (flag: string, value: string): string => {
    const result = spawnSync('docker', ['run', flag, value, 'busybox', 'true'], {
      env: { ...process.env, DOCKER_HOST: `unix://${join(dockerConfig, 'no-daemon.sock')}`, DOCKER_CONFIG: dockerConfig },
      encoding: 'utf8',
      timeout: 20_000,
    });
    return result.stderr;
  };

  it.each([...volumeFlagErrors.map((c) => ['-v', c] as const), ...mountFlagErrors.map((c) => ['--mount', c] as const)])(
    '%s %j',
    (flag, c) => {
      const output = dockerRun(flag, c.value);
      if (c.stage === 'cli') expect(output).toContain(`: ${c.error}\n`);
      else expect(output).toContain('Cannot connect to the Docker daemon');
    },
  );

  it('accepts what strata accepts', () => {
    for (const value of ['myvol:/data:ro,nocopy', '/h:/c:rshared,Z', './data:/c', '/data']) {
      expect(dockerRun('-v', value)).toContain('Cannot connect to the Docker daemon');
    }
    for (const value of [`type=bind,src=${hostDir},"target=/with,comma"`, 'type=tmpfs,target=/run,tmpfs-size=64m,tmpfs-mode=1777']) {
      expect(dockerRun('--mount', value)).toContain('Cannot connect to the Docker daemon');
    }
  });
});

