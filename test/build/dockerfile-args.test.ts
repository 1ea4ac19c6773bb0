import { describe, expect, it } from 'vitest';
import { BuildArgs, PLATFORM_BUILD_ARGS, PROXY_BUILD_ARGS, expandInstruction, parseDockerfile } from '../../src/build/dockerfile/index.js';
import type { ArgInstruction, BuildArgsOptions, DockerfileAst, StageArgs } from '../../src/build/dockerfile/index.js';

const amd64 = { os: 'linux', architecture: 'amd64' };
const armv7 = { os: 'linux', architecture: 'arm', variant: 'v7' };

/** Steps through a one-stage Dockerfile the way the engine will: meta ARGs, then ARG/ENV in order. */
function walk(text: string, options: BuildArgsOptions = {}): { args: BuildArgs; stage: StageArgs; env: string[]; ast: DockerfileAst } {
  const ast = parseDockerfile(text);
  const args = new BuildArgs({ targetPlatform: armv7, buildPlatform: amd64, ...options, escapeChar: ast.escapeChar });
  for (const meta of ast.metaArgs) args.addMetaArgs(meta);
  const stage = args.newStage();
  const env: string[] = [];
  for (const instruction of ast.stages[0]!.instructions) {
    if (instruction.kind === 'ARG') stage.declare(instruction, env);
    if (instruction.kind === 'ENV') {
      const expanded = expandInstruction(instruction, stage.lookup(env), ast.escapeChar);
      for (const [k, v] of expanded.pairs) {
        const i = env.findIndex((e) => e.startsWith(`${k}=`));
        if (i >= 0) env[i] = `${k}=${v}`;
        else env.push(`${k}=${v}`);
      }
    }
  }
  return { args, stage, env, ast };
}

describe('meta ARGs (before the first FROM)', () => {
  it('are visible on FROM lines, with --build-arg overriding the default', () => {
    const { args } = walk('ARG TAG=3.19\nARG REPO\nFROM alpine:$TAG\n');
    expect(args.metaLookup()('TAG')).toBe('3.19');
    expect(args.metaLookup()('REPO')).toBeUndefined();
    const overridden = walk('ARG TAG=3.19\nFROM alpine:$TAG\n', { buildArgs: { TAG: 'edge' } }).args;
    expect(overridden.metaLookup()('TAG')).toBe('edge');
  });

  it('substitute earlier meta ARGs in their defaults', () => {
    const { args } = walk('ARG A=1\nARG B=${A}-x C=$A\nFROM x\n', { buildArgs: { A: '9' } });
    expect(args.metaLookup()('B')).toBe('9-x');
    expect(args.metaLookup()('C')).toBe('9');
  });

  it('are not visible inside a stage until re-declared', () => {
    const { stage } = walk('ARG V=1\nFROM x\n');
    expect(stage.lookup()('V')).toBeUndefined();
    const redeclared = walk('ARG V=1\nFROM x\nARG V\n').stage;
    expect(redeclared.lookup()('V')).toBe('1');
  });

  it('a re-declaration without value takes the --build-arg value first', () => {
    expect(walk('ARG V=1\nFROM x\nARG V\n', { buildArgs: { V: '2' } }).stage.value('V')).toBe('2');
  });
});

describe('stage ARGs', () => {
  it('have their default, overridable by --build-arg', () => {
    expect(walk('FROM x\nARG A=def\n').stage.value('A')).toBe('def');
    expect(walk('FROM x\nARG A=def\n', { buildArgs: { A: 'cli' } }).stage.value('A')).toBe('cli');
    expect(walk('FROM x\nARG A=\n').stage.value('A')).toBe('');
    expect(walk('FROM x\nARG A\n').stage.value('A')).toBeUndefined();
  });

  it('a stage default wins over the meta default', () => {
    expect(walk('ARG A=meta\nFROM x\nARG A=stage\n').stage.value('A')).toBe('stage');
  });

  it('defaults see earlier ARGs and ENV, but not names of the same instruction', () => {
    const { stage } = walk('FROM x\nARG A=1\nENV E=env\nARG B=$A-$E C=$B\n');
    expect(stage.value('B')).toBe('1-env');
    expect(stage.value('C')).toBe('');
  });

  it('ENV of the same name always wins over an ARG', () => {
    const { stage, env } = walk('FROM x\nARG V=arg\nENV V=env\n', { buildArgs: { V: 'cli' } });
    expect(stage.lookup(env)('V')).toBe('env');
    expect(stage.value('V')).toBe('cli');
    expect(stage.runEnv(env)).toEqual([]);
  });

  it('declare returns the substituted definitions', () => {
    const ast = parseDockerfile('FROM x\nARG A=$HOME/x B\n');
    const stage = new BuildArgs().newStage();
    expect(stage.declare(ast.stages[0]!.instructions[0] as ArgInstruction, ['HOME=/root'])).toEqual([
      { name: 'A', default: '/root/x' },
      { name: 'B' },
    ]);
  });

  it('a --build-arg given without a value overrides nothing', () => {
    const { stage, args } = walk('FROM x\nARG A=def\n', { buildArgs: { A: undefined, Z: undefined } });
    expect(stage.value('A')).toBe('def');
    expect(args.unusedBuildArgs()).toEqual(['Z']);
  });
});

describe('RUN environment and history', () => {
  it('adds declared build args with a value to RUN, sorted in history', () => {
    const { stage, env } = walk('FROM x\nARG B=2\nARG A=1\nARG NOVALUE\n');
    expect(stage.runEnv(env)).toEqual(['B=2', 'A=1']);
    expect(stage.historyArgs(env)).toEqual(['A=1', 'B=2']);
  });

  it('gives null history args when no build arg is in scope', () => {
    expect(walk('FROM x\nARG NOVALUE\n').stage.historyArgs([])).toBeNull();
  });
});

describe('predefined proxy args', () => {
  it('lists upper and lower case HTTP, HTTPS, FTP, NO and ALL proxies', () => {
    expect(PROXY_BUILD_ARGS).toEqual(['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy']);
  });

  it('are usable without declaration, reach RUN, but stay out of history', () => {
    const { stage, args } = walk('FROM x\nRUN true\n', { buildArgs: { HTTP_PROXY: 'http://p:3128', no_proxy: 'localhost' } });
    expect(stage.lookup()('HTTP_PROXY')).toBe('http://p:3128');
    expect(stage.runEnv().sort()).toEqual(['HTTP_PROXY=http://p:3128', 'no_proxy=localhost']);
    expect(stage.historyArgs()).toEqual([]);
    expect(args.unusedBuildArgs()).toEqual([]);
    expect(args.metaLookup()('HTTP_PROXY')).toBe('http://p:3128');
  });

  it('appear in history once declared', () => {
    const { stage } = walk('FROM x\nARG HTTP_PROXY\nARG V=1\n', { buildArgs: { HTTP_PROXY: 'http://p', HTTPS_PROXY: 'http://s' } });
    expect(stage.historyArgs()).toEqual(['HTTP_PROXY=http://p', 'V=1']);
  });

  it('are not set when not given', () => {
    expect(walk('FROM x\n').stage.lookup()('HTTP_PROXY')).toBeUndefined();
  });
});

describe('automatic platform args', () => {
  it('are defined on FROM lines from the target and build platforms', () => {
    const lookup = walk('FROM x\n').args.metaLookup();
    expect(Object.fromEntries(PLATFORM_BUILD_ARGS.map((n) => [n, lookup(n)]))).toEqual({
      TARGETPLATFORM: 'linux/arm/v7',
      TARGETOS: 'linux',
      TARGETARCH: 'arm',
      TARGETVARIANT: 'v7',
      BUILDPLATFORM: 'linux/amd64',
      BUILDOS: 'linux',
      BUILDARCH: 'amd64',
      BUILDVARIANT: '',
    });
  });

  it('need a declaration inside a stage', () => {
    expect(walk('FROM x\n').stage.lookup()('TARGETARCH')).toBeUndefined();
    const { stage } = walk('FROM x\nARG TARGETARCH BUILDPLATFORM\n');
    expect(stage.lookup()('TARGETARCH')).toBe('arm');
    expect(stage.historyArgs()).toEqual(['BUILDPLATFORM=linux/amd64', 'TARGETARCH=arm']);
  });

  it('can be overridden by --build-arg or a meta default', () => {
    expect(walk('FROM x\nARG TARGETOS\n', { buildArgs: { TARGETOS: 'windows' } }).stage.value('TARGETOS')).toBe('windows');
    expect(walk('ARG TARGETOS=freebsd\nFROM x\n').args.metaLookup()('TARGETOS')).toBe('freebsd');
  });
});

describe('unused build args warning', () => {
  it('lists --build-args no ARG declared, as Docker words it', () => {
    const { args } = walk('ARG META\nFROM x\nARG USED\n', { buildArgs: { USED: '1', META: '2', zeta: '3', ALPHA: '4', HTTP_PROXY: 'p' } });
    expect(args.unusedBuildArgs()).toEqual(['ALPHA', 'zeta']);
    expect(args.unusedBuildArgsWarning()).toBe('[Warning] One or more build-args [ALPHA zeta] were not consumed');
  });

  it('is undefined when everything was consumed', () => {
    expect(walk('FROM x\nARG A\n', { buildArgs: { A: '1' } }).args.unusedBuildArgsWarning()).toBeUndefined();
  });
});
