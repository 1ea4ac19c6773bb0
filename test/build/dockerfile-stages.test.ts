import { describe, expect, it } from 'vitest';
import { DockerfileError, findStageByName, parseDockerfile, planBuild } from '../../src/build/dockerfile/index.js';
import type { PlanOptions } from '../../src/build/dockerfile/index.js';

function plan(text: string, opts: PlanOptions = {}) {
  return planBuild(parseDockerfile(text), opts);
}

function planError(text: string, opts: PlanOptions = {}): DockerfileError {
  try {
    plan(text, opts);
  } catch (err) {
    if (err instanceof DockerfileError) return err;
    throw err;
  }
  throw new Error('expected a DockerfileError');
}

const multi = `FROM golang:1.22 AS build
RUN go build -o /out/app
FROM alpine AS tools
RUN apk add curl
FROM scratch AS unused
FROM build AS test
RUN go test
FROM alpine
COPY --from=build /out/app /app
COPY --from=tools /usr/bin/curl /usr/bin/
`;

describe('FROM bases', () => {
  it('resolves images, scratch and earlier stages (case-insensitively)', () => {
    const p = plan('FROM alpine:3.19 AS Base\nFROM scratch\nFROM BASE\nFROM base:tag\n');
    expect(p.stages.map((s) => s.base)).toEqual([
      { kind: 'image', ref: 'alpine:3.19' },
      { kind: 'scratch' },
      { kind: 'stage', index: 0 },
      { kind: 'image', ref: 'base:tag' },
    ]);
  });

  it('treats the name of a later stage (or its own) as an image', () => {
    const p = plan('FROM later AS first\nFROM alpine AS later\nFROM self AS self\n');
    expect(p.stages.map((s) => s.base)).toEqual([
      { kind: 'image', ref: 'later' },
      { kind: 'image', ref: 'alpine' },
      { kind: 'image', ref: 'self' },
    ]);
  });

  it('substitutes meta ARGs, --build-arg and platform args in FROM and --platform', () => {
    const text = 'ARG TAG=3.19\nARG IMG=alpine\nFROM --platform=$BUILDPLATFORM ${IMG}:${TAG} AS b\nFROM b\n';
    const p = plan(text, { buildArgs: { TAG: 'edge' }, buildPlatform: { os: 'linux', architecture: 'arm64' } });
    expect(p.stages[0]).toMatchObject({ base: { kind: 'image', ref: 'alpine:edge' }, platform: 'linux/arm64' });
    expect(p.stages[1]!.base).toEqual({ kind: 'stage', index: 0 });
  });

  it('resolves a stage name that comes from a meta ARG', () => {
    const p = plan('ARG FLAVOR=dev\nFROM alpine AS dev\nFROM alpine AS prod\nFROM ${FLAVOR}\n', { buildArgs: { FLAVOR: 'PROD' } });
    expect(p.stages[2]!.base).toEqual({ kind: 'stage', index: 1 });
  });

  it('refuses a base that expands to nothing', () => {
    const err = planError('ARG IMG\nFROM $IMG\n');
    expect(err.message).toBe('Dockerfile:2: base name ($IMG) should not be blank');
  });
});

describe('COPY --from and RUN --mount from=', () => {
  it('resolves stage names, indexes, scratch and images', () => {
    const p = plan('FROM a AS one\nFROM b\nCOPY --from=one /x /x\nCOPY --from=0 /y /y\nCOPY --from=nginx:1 /z /z\nCOPY --from=scratch / /\nRUN --mount=from=ONE,target=/m --mount=type=secret,id=s true\n');
    expect(p.stages[1]!.dependencies.map((d) => [d.instruction.kind, d.source, d.mountIndex])).toEqual([
      ['COPY', { kind: 'stage', index: 0 }, undefined],
      ['COPY', { kind: 'stage', index: 0 }, undefined],
      ['COPY', { kind: 'image', ref: 'nginx:1' }, undefined],
      ['COPY', { kind: 'scratch' }, undefined],
      ['RUN', { kind: 'stage', index: 0 }, 0],
    ]);
  });

  it('may refer to a later stage, which is then built first', () => {
    const p = plan('FROM a AS first\nCOPY --from=second /x /x\nFROM b AS second\n', { target: 'first' });
    expect(p.stages[0]!.dependencies[0]!.source).toEqual({ kind: 'stage', index: 1 });
    expect(p.order).toEqual([1, 0]);
  });

  it('refuses stage indexes out of range', () => {
    expect(planError('FROM a\nFROM b\nCOPY --from=2 /x /x\n').message).toBe('Dockerfile:3: invalid stage index 2');
    expect(planError('FROM a\nCOPY --from=-1 /x /x\n').detail).toBe('invalid stage index -1');
  });

  it('refuses variables in --from, as BuildKit does', () => {
    expect(planError('ARG S=a\nFROM a\nCOPY --from=$S /x /x\n').detail).toBe(
      'variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround',
    );
  });
});

describe('targets', () => {
  it('builds the last stage by default, with only the stages it needs, dependencies first', () => {
    const p = plan(multi);
    expect(p.target).toBe(4);
    expect(p.order).toEqual([0, 1, 4]);
  });

  it('--target selects a stage by name, case-insensitively', () => {
    const p = plan(multi, { target: 'TEST' });
    expect(p.target).toBe(3);
    expect(p.order).toEqual([0, 3]);
  });

  it('refuses an unknown target with Docker\'s message', () => {
    expect(planError(multi, { target: 'nope' }).detail).toBe('failed to reach build target nope in Dockerfile');
  });

  it('findStageByName only looks before a position when asked', () => {
    const ast = parseDockerfile(multi);
    expect(findStageByName(ast, 'Tools')).toBe(1);
    expect(findStageByName(ast, 'tools', 1)).toBeUndefined();
  });
});

describe('circular dependencies', () => {
  it('are refused when two stages copy from each other', () => {
    const err = planError('FROM a AS x\nCOPY --from=y /a /a\nFROM b AS y\nCOPY --from=x /b /b\n');
    expect(err.detail).toBe('circular dependency detected on stage: x');
    expect(err.line).toBe(2);
  });

  it('are refused for a stage copying from itself', () => {
    expect(planError('FROM a AS me\nCOPY --from=me /a /b\n').detail).toBe('circular dependency detected on stage: me');
    expect(planError('FROM a\nCOPY --from=0 /a /b\n').detail).toBe('circular dependency detected on stage: 0');
  });

  it('include FROM edges', () => {
    expect(planError('FROM a AS x\nCOPY --from=y /a /a\nFROM x AS y\n').detail).toBe('circular dependency detected on stage: x');
  });
});
