/**
 * The CLI framework: docker-compatible output formatting, store-root
 * resolution, progress display, and the error-line / exit-status contract of
 * the `strata` binary.
 *
 * Expected tables, sizes and JSON below were captured from docker 20.10's CLI
 * (`docker images`, `docker history`, `docker ps -a`, `docker image inspect`)
 * or taken from go-units' own tests.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { CliError, main, type CommandRegistrar } from '../../src/cli/main.js';
import {
  formatGoG,
  formatJson,
  formatTable,
  humanDuration,
  humanSize,
  humanTimeAgo,
  truncateId,
} from '../../src/cli/output.js';
import { createProgress, stopAllProgress } from '../../src/cli/progress.js';
import { CODE_CACHE_HOME } from './helpers.js';
import { defaultRoot, resolveRoot } from '../../src/util/root.js';

const repoRoot = resolve(import.meta.dirname, '..', '..');
const packageVersion = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const WEEK = 7 * DAY;
const MONTH = 30 * DAY;
const YEAR = 365 * DAY;

describe('humanSize', () => {
  it('matches go-units HumanSize (4 significant digits)', () => {
    const cases: [number, string][] = [
      [1000, '1kB'],
      [1024, '1.024kB'],
      [1_000_000, '1MB'],
      [1_048_576, '1.049MB'],
      [2_000_000, '2MB'],
      [3.42e9, '3.42GB'],
      [5.372e12, '5.372TB'],
      [2.22e15, '2.22PB'],
      [1e28, '1e+04YB'],
    ];
    for (const [bytes, text] of cases) expect(humanSize(bytes, 4)).toBe(text);
  });

  it("matches docker's image and container sizes (3 significant digits)", () => {
    const cases: [number | bigint, string][] = [
      [0, '0B'],
      [999, '999B'],
      [1000, '1kB'],
      [1_984_233, '1.98MB'], // busybox-static image, from `docker image inspect` + `docker images`
      [1_500_000, '1.5MB'],
      [999_500, '1e+03kB'], // docker history really prints this
      [1125, '1.12kB'], // an exact binary half rounds to even, as in Go
      [1_048_576, '1.05MB'],
      [72_800_000_000n, '72.8GB'],
    ];
    for (const [bytes, text] of cases) expect(humanSize(bytes)).toBe(text);
  });

  it("formats like Go's %g", () => {
    expect(formatGoG(0.0001234, 3)).toBe('0.000123');
    expect(formatGoG(0.00001234, 3)).toBe('1.23e-05');
    expect(formatGoG(123456, 3)).toBe('1.23e+05');
    expect(formatGoG(100, 3)).toBe('100');
    expect(formatGoG(2.5, 1)).toBe('2');
    expect(formatGoG(-1.5, 4)).toBe('-1.5');
    expect(formatGoG(5e-324, 3)).toBe('4.94e-324');
  });
});

describe('humanDuration', () => {
  it('matches go-units HumanDuration', () => {
    const cases: [number, string][] = [
      [450, 'Less than a second'],
      [1 * SECOND, '1 second'],
      [45 * SECOND, '45 seconds'],
      [59 * SECOND, '59 seconds'],
      [60 * SECOND, 'About a minute'],
      [3 * MINUTE, '3 minutes'],
      [35 * MINUTE + 40 * SECOND, '35 minutes'],
      [59 * MINUTE, '59 minutes'],
      [1 * HOUR, 'About an hour'],
      [1 * HOUR + 29 * MINUTE, 'About an hour'],
      [1 * HOUR + 31 * MINUTE, '2 hours'],
      [3 * HOUR + 29 * MINUTE, '3 hours'],
      [3 * HOUR + 31 * MINUTE, '4 hours'],
      [24 * HOUR, '24 hours'],
      [1 * DAY + 12 * HOUR, '36 hours'],
      [2 * DAY, '2 days'],
      [13 * DAY + 5 * HOUR, '13 days'],
      [2 * WEEK, '2 weeks'],
      [4 * WEEK + 3 * DAY, '4 weeks'],
      [1 * MONTH, '4 weeks'],
      [1 * MONTH + 2 * WEEK, '6 weeks'],
      [2 * MONTH, '2 months'],
      [3 * MONTH + 1 * WEEK, '3 months'],
      [23 * MONTH, '23 months'],
      [24 * MONTH, '24 months'],
      [24 * MONTH + 2 * WEEK, '2 years'],
      [3 * YEAR + 2 * MONTH, '3 years'],
      [-5 * MINUTE, 'Less than a second'],
    ];
    for (const [ms, text] of cases) expect(humanDuration(ms), `${ms} ms`).toBe(text);
  });

  it("gives docker's CREATED column", () => {
    const now = Date.UTC(2024, 5, 1, 12, 0, 0);
    expect(humanTimeAgo(now - 70 * MINUTE, now)).toBe('About an hour ago');
    expect(humanTimeAgo(new Date(now - 2 * DAY), now)).toBe('2 days ago');
    expect(humanTimeAgo('2024-06-01T11:59:59.5Z', now)).toBe('Less than a second ago');
    expect(() => humanTimeAgo('yesterday-ish', now)).toThrow(/invalid time/);
  });
});

describe('formatTable', () => {
  it('lays out `docker images` exactly as docker does', () => {
    const text = formatTable(
      ['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE'],
      [
        ['a-much-longer-repository-name/x', 'v1.2.3', '872f5cf173cd', 'Less than a second ago', '4.48MB'],
        ['b', 't', 'e345c1ee92cf', '1 second ago', '1.98MB'],
        ['strata-test/busybox', 'latest', 'e345c1ee92cf', '1 second ago', '1.98MB'],
      ],
    );
    expect(text).toBe(
      'REPOSITORY                        TAG       IMAGE ID       CREATED                  SIZE\n' +
        'a-much-longer-repository-name/x   v1.2.3    872f5cf173cd   Less than a second ago   4.48MB\n' +
        'b                                 t         e345c1ee92cf   1 second ago             1.98MB\n' +
        'strata-test/busybox               latest    e345c1ee92cf   1 second ago             1.98MB\n',
    );
  });

  it('pads before an empty last cell, like `docker history`', () => {
    const text = formatTable(
      ['IMAGE', 'CREATED', 'CREATED BY', 'SIZE', 'COMMENT'],
      [
        ['872f5cf173cd', 'Less than a second ago', '/bin/sh -c head -c 999500 /dev/zero > /g', humanSize(999_500), ''],
        ['e345c1ee92cf', '1 second ago', '', humanSize(1_984_233), 'Imported from -'],
      ],
    );
    expect(text).toBe(
      'IMAGE          CREATED                  CREATED BY                                 SIZE      COMMENT\n' +
        '872f5cf173cd   Less than a second ago   /bin/sh -c head -c 999500 /dev/zero > /g   1e+03kB   \n' +
        'e345c1ee92cf   1 second ago                                                        1.98MB    Imported from -\n',
    );
  });

  it('prints a header-only table like an empty `docker ps -a`', () => {
    expect(formatTable(['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES'], [])).toBe(
      'CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES\n',
    );
  });

  it('counts code points, flattens tabs and newlines, and aligns ragged rows per block', () => {
    expect(formatTable(['NAME', 'X'], [['héllo→', 'a\tb\nc']])).toBe('NAME      X\nhéllo→    a b c\n');
    // Column 1 is aligned over rows 1-2 only; row 3 has no cell after column 0... and starts a new block.
    const ragged = formatTable([], [['a', 'bb', 'c'], ['aaaaaaaaaaaa', 'b', 'c'], ['x'], ['y', 'z']], { minWidth: 0, padding: 1 });
    expect(ragged).toBe('a            bb c\naaaaaaaaaaaa b  c\nx\ny z\n');
    expect(formatTable([], [])).toBe('');
  });
});

describe('formatJson', () => {
  it('indents like `docker inspect`', () => {
    const inspect = [
      {
        Id: 'sha256:e345c1ee92cf8d8b1850e69bb0d9b56c0a138e9d37ca5c3ee60d6300cced322f',
        RepoTags: ['b:t'],
        RepoDigests: [],
        Config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'], Volumes: null },
      },
    ];
    expect(formatJson(inspect)).toBe(
      '[\n' +
        '    {\n' +
        '        "Id": "sha256:e345c1ee92cf8d8b1850e69bb0d9b56c0a138e9d37ca5c3ee60d6300cced322f",\n' +
        '        "RepoTags": [\n' +
        '            "b:t"\n' +
        '        ],\n' +
        '        "RepoDigests": [],\n' +
        '        "Config": {\n' +
        '            "Env": [\n' +
        '                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\n' +
        '            ],\n' +
        '            "Cmd": [\n' +
        '                "sh"\n' +
        '            ],\n' +
        '            "Volumes": null\n' +
        '        }\n' +
        '    }\n' +
        ']\n',
    );
    expect(formatJson([])).toBe('[]\n');
    expect(() => formatJson(undefined)).toThrow(TypeError);
  });

  it('truncates ids like docker', () => {
    expect(truncateId('sha256:e345c1ee92cf8d8b1850e69bb0d9b56c0a138e9d37ca5c3ee60d6300cced322f')).toBe('e345c1ee92cf');
    expect(truncateId('e345c1ee92cf8d8b')).toBe('e345c1ee92cf');
  });
});

describe('store root', () => {
  it('prefers STRATA_ROOT, then an absolute XDG_DATA_HOME, then ~/.local/share', () => {
    expect(defaultRoot({ STRATA_ROOT: '/srv/strata', XDG_DATA_HOME: '/xdg', HOME: '/home/u' })).toBe('/srv/strata');
    expect(defaultRoot({ STRATA_ROOT: '', XDG_DATA_HOME: '/xdg', HOME: '/home/u' })).toBe('/xdg/strata');
    expect(defaultRoot({ XDG_DATA_HOME: 'relative/xdg', HOME: '/home/u' })).toBe('/home/u/.local/share/strata');
    expect(defaultRoot({ HOME: '/home/u' })).toBe('/home/u/.local/share/strata');
    expect(defaultRoot({ STRATA_ROOT: 'rel/root' })).toBe(resolve('rel/root'));
  });

  it('lets --root override the environment and resolves it to an absolute path', () => {
    expect(resolveRoot('/flag/root', { STRATA_ROOT: '/env/root' })).toBe('/flag/root');
    expect(resolveRoot('some/dir', {})).toBe(resolve('some/dir'));
    expect(resolveRoot(undefined, { STRATA_ROOT: '/env/root' })).toBe('/env/root');
    expect(() => resolveRoot('', {})).toThrow(/must not be empty/);
  });
});

describe('progress', () => {
  function fakeTerminal(isTTY: boolean): PassThrough & { isTTY: boolean; columns: number; output(): string } {
    const stream = new PassThrough() as PassThrough & { isTTY: boolean; columns: number; output(): string };
    let written = '';
    stream.on('data', (chunk: Buffer) => (written += chunk.toString()));
    stream.isTTY = isTTY;
    stream.columns = 120;
    stream.output = () => written;
    return stream;
  }

  it('draws a byte bar on a terminal', () => {
    const terminal = fakeTerminal(true);
    const progress = createProgress('Exporting layer', 2_000_000, { stream: terminal });
    expect(progress.visible).toBe(true);
    progress.update(500_000);
    progress.increment(500_000);
    progress.stop();
    progress.stop();
    expect(progress.visible).toBe(false);
    expect(terminal.output()).toContain('Exporting layer [====================>                   ] 1MB/2MB');
  });

  it('prints nothing when piped or quiet, yet accepts updates', () => {
    for (const [isTTY, quiet] of [[false, false], [true, true]] as const) {
      const terminal = fakeTerminal(isTTY);
      const progress = createProgress('Importing', undefined, { stream: terminal, quiet });
      progress.setTotal(10);
      progress.increment();
      progress.update(10);
      progress.stop();
      expect(progress.visible).toBe(false);
      expect(terminal.output()).toBe('');
    }
  });

  it('shows counts without a bar while the total is unknown, and stops all bars at once', () => {
    const terminal = fakeTerminal(true);
    const progress = createProgress('Files', undefined, { stream: terminal, unit: 'count' });
    progress.update(42);
    stopAllProgress();
    expect(progress.visible).toBe(false);
    expect(terminal.output()).toContain('Files 42');
    expect(terminal.output()).not.toMatch(/Files \[|=>/);
  });
});

function collect(): PassThrough & { text(): string } {
  const stream = new PassThrough() as PassThrough & { text(): string };
  let text = '';
  stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
  stream.text = () => text;
  return stream;
}

describe('main (in process)', () => {
  const run = async (argv: string[], registrars?: CommandRegistrar[], env: NodeJS.ProcessEnv = {}) => {
    const stdout = collect();
    const stderr = collect();
    const code = await main(['node', 'strata', ...argv], { stdout, stderr, env }, registrars);
    return { code, stdout: stdout.text(), stderr: stderr.text() };
  };

  it('gives registered commands the context, resolving --root when the action runs', async () => {
    const where: CommandRegistrar = (program, ctx) => {
      program.command('where').action(() => {
        ctx.stdout.write(`root=${ctx.root()} version=${ctx.version}\n`);
      });
    };
    expect(await run(['--root', 'rel', 'where'], [where], { STRATA_ROOT: '/env/root' })).toEqual({
      code: 0,
      stdout: `root=${resolve('rel')} version=${packageVersion}\n`,
      stderr: '',
    });
    expect((await run(['where'], [where], { STRATA_ROOT: '/env/root' })).stdout).toBe(`root=/env/root version=${packageVersion}\n`);
    // Only the given registrars exist.
    expect(await run(['version'], [where])).toEqual({ code: 1, stdout: '', stderr: "strata: unknown command 'version'\n" });
  });

  it('reports whatever a command throws as one line, with its status', async () => {
    const failing: CommandRegistrar = (program) => {
      program.command('multi').action(() => {
        throw new Error('first line\n  second line\n');
      });
      program.command('status').action(async () => {
        throw new CliError('image not found', { exitCode: 3 });
      });
      program.command('bare').action(() => {
        throw 'a bare string';
      });
      program.command('empty').action(() => {
        throw new TypeError('');
      });
    };
    expect(await run(['multi'], [failing])).toEqual({ code: 1, stdout: '', stderr: 'strata: first line; second line\n' });
    expect(await run(['status'], [failing])).toEqual({ code: 3, stdout: '', stderr: 'strata: image not found\n' });
    expect(await run(['bare'], [failing])).toEqual({ code: 1, stdout: '', stderr: 'strata: a bare string\n' });
    expect(await run(['empty'], [failing])).toEqual({ code: 1, stdout: '', stderr: 'strata: TypeError\n' });
    const debug = await run(['-D', 'multi'], [failing]);
    expect(debug.stderr.split('\n')[0]).toBe('strata: first line; second line');
    expect(debug.stderr).toMatch(/\n\s+at /);
    expect((await run(['multi'], [failing], { STRATA_DEBUG: '1' })).stderr).toMatch(/\n\s+at /);
  });

  it('stops progress bars before printing the error line', async () => {
    const terminal = collect() as ReturnType<typeof collect> & { isTTY: boolean; columns: number };
    terminal.isTTY = true;
    terminal.columns = 100;
    let bar: ReturnType<typeof createProgress> | undefined;
    const busy: CommandRegistrar = (program) => {
      program.command('busy').action(() => {
        bar = createProgress('Copying', 10, { stream: terminal, unit: 'count' });
        bar.update(5);
        throw new Error('disk full');
      });
    };
    expect(await run(['busy'], [busy])).toMatchObject({ code: 1, stderr: 'strata: disk full\n' });
    expect(bar?.visible).toBe(false);
    expect(terminal.text()).toContain('Copying [====================>');
  });
});

describe('strata binary', () => {
  // The package's bin, built by the global setup (npm run build); STRATA_CLI_MAIN points elsewhere when iterating.
  const cli = process.env.STRATA_CLI_MAIN ?? join(repoRoot, 'dist', 'cli', 'strata.cjs');

  function strata(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
    if (!existsSync(cli)) throw new Error(`${cli} is missing: build first (npm run build)`);
    return new Promise((res) => {
      execFile(
        process.execPath,
        [cli, ...args],
        { env: { PATH: process.env.PATH, HOME: '/home/nobody-strata-test', XDG_CACHE_HOME: CODE_CACHE_HOME, ...env }, encoding: 'utf8' },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
          res({ code, stdout, stderr });
        },
      );
    });
  }

  it('prints its version', async () => {
    expect(await strata(['--version'])).toEqual({ code: 0, stdout: `strata version ${packageVersion}\n`, stderr: '' });
    expect(await strata(['-v'])).toMatchObject({ code: 0, stdout: `strata version ${packageVersion}\n` });
  });

  it('prints help on stdout and succeeds when run without a command', async () => {
    const { code, stdout, stderr } = await strata([]);
    expect(code).toBe(0);
    expect(stderr).toBe('');
    expect(stdout).toMatch(/^Usage: strata \[OPTIONS\] COMMAND/);
    expect(stdout).toContain('--root <dir>');
    expect(stdout).toContain('version');
    expect(await strata(['help', 'version'])).toMatchObject({ code: 0, stderr: '', stdout: expect.stringMatching(/^Usage: strata version/) });
    expect(await strata(['version', '--help'])).toMatchObject({ code: 0, stderr: '', stdout: expect.stringMatching(/^Usage: strata version/) });
  });

  it('reports usage errors as one line with status 1', async () => {
    const cases: [string[], string][] = [
      [['nope'], "strata: unknown command 'nope'\n"],
      [['versoin'], "strata: unknown command 'versoin' (Did you mean version?)\n"],
      [['--bogus', 'version'], "strata: unknown option '--bogus'\n"],
      [['--root'], "strata: option '--root <dir>' argument missing\n"],
      // Global options belong before the command, as with docker.
      [['version', '--root', '/x'], "strata: unknown option '--root'\n"],
      [['version', 'extra'], "strata: too many arguments for 'version'. Expected 0 arguments but got 1.\n"],
      [['help', 'nope'], "strata: unknown help topic 'nope'\n"],
    ];
    for (const [args, line] of cases) {
      expect(await strata(args), args.join(' ')).toEqual({ code: 1, stdout: '', stderr: line });
    }
  });

  it('reports a failing command as one line with status 1, and a stack with --debug', async () => {
    expect(await strata(['version', '--format', '{{.Version}}'])).toEqual({
      code: 1,
      stdout: '',
      stderr: `strata: unsupported --format "{{.Version}}": only 'json' is supported\n`,
    });
    const debug = await strata(['--debug', 'version', '--format', 'yaml']);
    expect(debug.code).toBe(1);
    expect(debug.stderr.split('\n')[0]).toBe(`strata: unsupported --format "yaml": only 'json' is supported`);
    expect(debug.stderr).toMatch(/\n\s+at /);
  });

  it('resolves the store root from --root, STRATA_ROOT and XDG_DATA_HOME', async () => {
    const root = async (args: string[], env: NodeJS.ProcessEnv = {}) => {
      const { code, stdout, stderr } = await strata([...args, 'version', '--format', 'json'], env);
      expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
      return (JSON.parse(stdout) as { Root: string; Version: string }).Root;
    };
    expect(await root(['--root', '/flag/root'], { STRATA_ROOT: '/env/root' })).toBe('/flag/root');
    expect(await root([], { STRATA_ROOT: '/env/root' })).toBe('/env/root');
    expect(await root([], { XDG_DATA_HOME: '/xdg' })).toBe('/xdg/strata');
    expect(await root([])).toBe('/home/nobody-strata-test/.local/share/strata');
    const plain = await strata(['--root', '/flag/root', 'version']);
    expect(plain.stdout).toMatch(/^Version: +\S+\n.*\nOS\/Arch: +linux\/\w+\nRoot: +\/flag\/root\n$/s);
  });
});
