import { describe, expect, it } from 'vitest';
import { DockerfileError, parseDockerfile, parseJsonArray, parseOnbuildTrigger } from '../../src/build/dockerfile/index.js';
import type { Instruction } from '../../src/build/dockerfile/index.js';

/** Parses `line` as the second line of a one-stage Dockerfile. */
function one(line: string): Instruction {
  const ast = parseDockerfile(`FROM base\n${line}\n`);
  const found = ast.stages.at(-1)!.instructions[0] ?? ast.stages.at(-1)!.from;
  return found;
}

/** The error Docker would give for `line` (as line 2). */
function failure(line: string): string {
  try {
    parseDockerfile(`FROM base\n${line}\n`);
  } catch (err) {
    if (err instanceof DockerfileError) {
      expect(err.line).toBe(2);
      return err.detail;
    }
    throw err;
  }
  throw new Error(`expected ${JSON.stringify(line)} to fail`);
}

describe('JSON exec form detection (Go json.Decoder semantics)', () => {
  const cases: [string, string[] | undefined][] = [
    ['["a", "b"]', ['a', 'b']],
    ['[ "a" , "b" ]', ['a', 'b']],
    ['\t["a"]\t', ['a']],
    ['[]', []],
    ['[""]', ['']],
    ['["\\u0041\\n\\"x\\""]', ['A\n"x"']],
    ['["a"] trailing words', ['a']],
    ['["a"]]', ['a']],
    ['[ "a", ]', undefined],
    ["['a']", undefined],
    ['[ "a" "b" ]', undefined],
    ['[', undefined],
    ['{"a": 1}', undefined],
    ['echo [a]', undefined],
    ['["a\tb"]', undefined],
  ];
  it.each(cases)('%s -> %j', (text, expected) => {
    expect(parseJsonArray(text)).toEqual(expected);
  });

  it('refuses JSON arrays with non-string elements (no shell-form fallback)', () => {
    for (const text of ['[1]', '["a", 1]', '[["a"]]', '["a", null]', '[true]', '[{}]']) {
      expect(() => parseJsonArray(text)).toThrow('when using JSON array syntax, arrays must be comprised of strings only');
    }
    expect(failure('CMD ["a", 1]')).toBe('when using JSON array syntax, arrays must be comprised of strings only');
  });
});

describe('RUN, CMD, ENTRYPOINT', () => {
  const cases: [string, object][] = [
    ['RUN apt-get update', { kind: 'RUN', form: 'shell', command: 'apt-get update', heredocs: [] }],
    ['RUN ["echo", "hi there"]', { kind: 'RUN', form: 'exec', command: ['echo', 'hi there'] }],
    ['RUN [ "a", ]', { kind: 'RUN', form: 'shell', command: '[ "a", ]' }],
    ['run   echo   spaced  ', { kind: 'RUN', form: 'shell', command: 'echo   spaced', original: 'run   echo   spaced' }],
    ['CMD ["sh"]', { kind: 'CMD', form: 'exec', command: ['sh'] }],
    ['CMD echo $HOME', { kind: 'CMD', form: 'shell', command: 'echo $HOME' }],
    ['CMD', { kind: 'CMD', form: 'shell', command: '' }],
    ['CMD []', { kind: 'CMD', form: 'exec', command: [] }],
    ['ENTRYPOINT ["/entry.sh", "--flag"]', { kind: 'ENTRYPOINT', form: 'exec', command: ['/entry.sh', '--flag'] }],
    ['ENTRYPOINT exec nginx -g "daemon off;"', { kind: 'ENTRYPOINT', form: 'shell', command: 'exec nginx -g "daemon off;"' }],
  ];
  it.each(cases)('%s', (line, expected) => {
    expect(one(line)).toMatchObject(expected);
  });

  it('parses RUN --mount, --network and --security', () => {
    const run = one(
      'RUN --mount=type=cache,target=/root/.cache,sharing=locked,mode=0700,uid=1000 --mount=type=bind,from=build,source=/out,target=/in ' +
        '--mount=type=secret,id=tok,required --mount=type=tmpfs,target=/t,size=64m --mount=type=ssh --network=none --security=insecure make',
    );
    expect(run).toMatchObject({
      kind: 'RUN',
      command: 'make',
      network: 'none',
      security: 'insecure',
      mounts: [
        { type: 'cache', target: '/root/.cache', sharing: 'locked', mode: 0o700, uid: 1000, readOnly: false, required: false },
        { type: 'bind', from: 'build', source: '/out', target: '/in', readOnly: true },
        { type: 'secret', id: 'tok', required: true, readOnly: true },
        { type: 'tmpfs', target: '/t', size: 64 * 1024 * 1024, readOnly: false },
        { type: 'ssh', readOnly: true },
      ],
    });
    expect(run.flags.network).toBe('none');
    expect(run.flags.mount).toHaveLength(5);
  });

  it('defaults mounts to bind, read-only unless rw is given, and keeps variables for later', () => {
    expect(one('RUN --mount=target=/x,rw x')).toMatchObject({ mounts: [{ type: 'bind', target: '/x', readOnly: false }] });
    expect(one('RUN --mount=type=$T,target=$DIR x')).toMatchObject({ mounts: [{ target: '$DIR' }] });
    expect(one('RUN --mount="type=bind,target=/a b" x')).toMatchObject({ mounts: [{ target: '/a b' }] });
  });

  const errors: [string, string][] = [
    ['RUN --mount=type=foo x', 'unsupported mount type "foo"'],
    ['RUN --mount=type=bind,mode=0755 x', 'mode not allowed for "bind" type mounts'],
    ['RUN --mount=type=tmpfs,uid=1 x', 'uid not allowed for "tmpfs" type mounts'],
    ['RUN --mount=type=cache,required x', "unexpected key 'required' for mount type 'cache'"],
    ['RUN --mount=type=cache,bogus=1 x', "unexpected key 'bogus' in 'bogus=1'"],
    ['RUN --mount=foo x', "invalid field 'foo' must be a key=value pair"],
    ['RUN --mount=type=bind,from=$STAGE x', "'from' doesn't support variable expansion, define alias stage instead"],
    ['RUN --mount=type=secret x', 'invalid secret mount. one of source, target required'],
    ['RUN --mount=type=secret,id=a,source=b x', "both source and id can't be set"],
    ['RUN --mount=type=bind,sharing=shared x', 'invalid cache sharing set for bind mount'],
    ['RUN --mount=type=cache,sharing=none x', 'unsupported sharing value "none"'],
    ['RUN --mount=type=cache,mode=999 x', 'invalid value 999 for mode'],
    ['RUN --mount=type=cache,ro=maybe x', 'invalid value for ro: maybe'],
    ['RUN --mount= x', 'failed to parse csv mounts: EOF'],
    ['RUN --mount=\'a"b\' x', 'failed to parse csv mounts: parse error on line 1, column 2: bare " in non-quoted-field'],
    ['RUN --network=bridge x', 'network mode "bridge" not supported'],
    ['RUN --security=root x', 'security "root" is not valid'],
    ['RUN --device=/dev/x x', 'Unknown flag: device'],
    ['RUN --network x', 'Missing a value on flag: network'],
    ['CMD --foo=bar x', 'Unknown flag: foo'],
  ];
  it.each(errors)('%s fails: %s', (line, message) => {
    expect(failure(line)).toBe(message);
  });
});

describe('SHELL', () => {
  it('takes a JSON array', () => {
    expect(one('SHELL ["/bin/bash", "-o", "pipefail", "-c"]')).toMatchObject({ kind: 'SHELL', command: ['/bin/bash', '-o', 'pipefail', '-c'] });
  });
  it.each([
    ['SHELL /bin/bash -c', 'SHELL requires the arguments to be in JSON form'],
    ['SHELL []', 'SHELL requires at least one argument'],
    ['SHELL', 'SHELL requires at least one argument'],
  ])('%s fails: %s', (line, message) => {
    expect(failure(line)).toBe(message);
  });
});

describe('ENV and LABEL', () => {
  const cases: [string, object][] = [
    ['ENV A=1', { kind: 'ENV', pairs: [['A', '1']], legacy: false }],
    [
      'ENV A=1 B="two words" C=three\\ four D=',
      {
        pairs: [
          ['A', '1'],
          ['B', '"two words"'],
          ['C', 'three\\ four'],
          ['D', ''],
        ],
      },
    ],
    ['ENV A=a=b', { pairs: [['A', 'a=b']] }],
    ['ENV "A"="x y"', { pairs: [['"A"', '"x y"']] }],
    ['ENV NAME value with   spaces', { pairs: [['NAME', 'value with   spaces']], legacy: true }],
    ['ENV NAME "quoted value"', { pairs: [['NAME', '"quoted value"']], legacy: true }],
    ['ENV A=1 \\\n    B=2', { pairs: [['A', '1'], ['B', '2']] }],
    ['LABEL "com.example.vendor"="ACME Inc" version=1.0', { kind: 'LABEL', pairs: [['"com.example.vendor"', '"ACME Inc"'], ['version', '1.0']] }],
    ['LABEL description value', { kind: 'LABEL', pairs: [['description', 'value']], legacy: true }],
  ];
  it.each(cases)('%s', (line, expected) => {
    expect(one(line)).toMatchObject(expected);
  });

  const errors: [string, string][] = [
    ['ENV', 'ENV requires at least one argument'],
    ['ENV A', 'ENV must have two arguments'],
    ['ENV =x', 'ENV names can not be blank'],
    ['ENV A=1 B', 'Syntax error - can\'t find = in "B". Must be of the form: name=value'],
    ['LABEL', 'LABEL requires at least one argument'],
    ['LABEL a', 'LABEL must have two arguments'],
    ['LABEL =b', 'LABEL names can not be blank'],
    ['ENV --x=1 A=1', 'Unknown flag: x'],
  ];
  it.each(errors)('%s fails: %s', (line, message) => {
    expect(failure(line)).toBe(message);
  });
});

describe('ARG', () => {
  const cases: [string, object][] = [
    ['ARG A', { args: [{ name: 'A' }] }],
    ['ARG A=', { args: [{ name: 'A', default: '' }] }],
    ['ARG A=1 B C="x y"', { args: [{ name: 'A', default: '1' }, { name: 'B' }, { name: 'C', default: '"x y"' }] }],
    ['ARG --ignored=1 A', { args: [{ name: 'A' }] }],
  ];
  it.each(cases)('%s', (line, expected) => {
    expect(one(line)).toMatchObject({ kind: 'ARG', ...expected });
  });
  it.each([
    ['ARG', 'ARG requires at least one argument'],
    ['ARG =1', 'ARG names can not be blank'],
  ])('%s fails: %s', (line, message) => {
    expect(failure(line)).toBe(message);
  });
  it('ARG without an "=" has no default, unlike an empty one', () => {
    const arg = one('ARG A');
    expect(arg.kind === 'ARG' && 'default' in arg.args[0]!).toBe(false);
  });
});

describe('COPY and ADD', () => {
  const cases: [string, object][] = [
    ['COPY a b /dst/', { kind: 'COPY', sources: ['a', 'b'], dest: '/dst/', link: false, parents: false, json: false, heredocs: [] }],
    ['COPY ["a b", "c", "/d e/"]', { sources: ['a b', 'c'], dest: '/d e/', json: true }],
    [
      'COPY --from=build --chown=app:app --chmod=755 --link --parents --exclude=*.md --exclude=tmp . /app',
      { from: 'build', chown: 'app:app', chmod: '755', link: true, parents: true, exclude: ['*.md', 'tmp'], sources: ['.'], dest: '/app' },
    ],
    ['COPY --chown="user name" a b', { chown: 'user name' }],
    ['COPY --from=a\\ b x y', { from: 'a b' }],
    ['COPY --link=false a b', { link: false }],
    ['COPY --link=TRUE a b', { link: true }],
    ['COPY -- --weird /dst', { sources: ['--weird'], dest: '/dst' }],
    ['ADD https://example.com/a.tgz /x/', { kind: 'ADD', sources: ['https://example.com/a.tgz'], dest: '/x/', keepGitDir: false }],
    [
      'ADD --checksum=sha256:abc --keep-git-dir --unpack=false --chown=1 git@github.com:a/b.git /src',
      { checksum: 'sha256:abc', keepGitDir: true, unpack: false, chown: '1' },
    ],
  ];
  it.each(cases)('%s', (line, expected) => {
    expect(one(line)).toMatchObject(expected);
  });

  it('records flags by name', () => {
    expect(one('COPY --from=a --link --exclude=x --exclude=y s d').flags).toEqual({ from: 'a', link: true, exclude: ['x', 'y'] });
  });

  const errors: [string, string][] = [
    ['COPY a', 'COPY requires at least two arguments, but only one was provided. Destination could not be determined'],
    ['ADD a', 'ADD requires at least two arguments, but only one was provided. Destination could not be determined'],
    ['COPY --foo=x a b', 'Unknown flag: foo'],
    ['COPY --from a b c', 'Missing a value on flag: from'],
    ['COPY --link= a b', 'Missing a value on flag: link'],
    ['COPY --link=maybe a b', 'Expecting boolean value for flag link, not: maybe'],
    ['COPY --from=a --from=b s d', 'Duplicate flag specified: from'],
    ['COPY --checksum=x a b', 'Unknown flag: checksum'],
    ['ADD --from=x a b', 'Unknown flag: from'],
  ];
  it.each(errors)('%s fails: %s', (line, message) => {
    expect(failure(line)).toBe(message);
  });
});

describe('EXPOSE, VOLUME, WORKDIR, USER, STOPSIGNAL, MAINTAINER', () => {
  const cases: [string, object][] = [
    ['EXPOSE 8080 443/udp 80', { kind: 'EXPOSE', ports: ['443/udp', '80', '8080'] }],
    ['EXPOSE $PORT', { ports: ['$PORT'] }],
    ['VOLUME /data', { kind: 'VOLUME', paths: ['/data'] }],
    ['VOLUME /a /b', { paths: ['/a', '/b'] }],
    ['VOLUME ["/data", " /logs "]', { paths: ['/data', '/logs'] }],
    ['WORKDIR /app', { kind: 'WORKDIR', path: '/app' }],
    ['WORKDIR /my app', { path: '/my app' }],
    ['USER app:app', { kind: 'USER', user: 'app:app' }],
    ['STOPSIGNAL SIGTERM', { kind: 'STOPSIGNAL', signal: 'SIGTERM' }],
    ['STOPSIGNAL --x=1 9', { signal: '9' }],
    ['MAINTAINER Jane Doe <jane@example.com>', { kind: 'MAINTAINER', name: 'Jane Doe <jane@example.com>' }],
  ];
  it.each(cases)('%s', (line, expected) => {
    expect(one(line)).toMatchObject(expected);
  });

  const errors: [string, string][] = [
    ['EXPOSE', 'EXPOSE requires at least one argument'],
    ['VOLUME', 'VOLUME requires at least one argument'],
    ['VOLUME []', 'VOLUME requires at least one argument'],
    ['VOLUME ["/a", " "]', 'VOLUME specified can not be an empty string'],
    ['WORKDIR', 'WORKDIR requires exactly one argument'],
    ['USER', 'USER requires exactly one argument'],
    ['STOPSIGNAL', 'STOPSIGNAL requires exactly one argument'],
    ['MAINTAINER', 'MAINTAINER requires exactly one argument'],
    ['WORKDIR --x=1 /a', 'Unknown flag: x'],
    ['USER --x=1 a', 'Unknown flag: x'],
  ];
  it.each(errors)('%s fails: %s', (line, message) => {
    expect(failure(line)).toBe(message);
  });
});

describe('HEALTHCHECK', () => {
  const s = 1_000_000_000;
  const cases: [string, object][] = [
    ['HEALTHCHECK NONE', { kind: 'HEALTHCHECK', none: true }],
    ['HEALTHCHECK --interval=5s NONE', { none: true }],
    ['HEALTHCHECK CMD curl -f http://localhost/ || exit 1', { none: false, test: ['CMD-SHELL', 'curl -f http://localhost/ || exit 1'] }],
    ['healthcheck cmd ["curl", "-f", "http://x"]', { test: ['CMD', 'curl', '-f', 'http://x'] }],
    [
      'HEALTHCHECK --interval=1m30s --timeout=5s --start-period=2.5s --start-interval=500ms --retries=3 CMD true',
      { interval: 90 * s, timeout: 5 * s, startPeriod: 2.5 * s, startInterval: 0.5 * s, retries: 3 },
    ],
    ['HEALTHCHECK --interval=0s --retries=0 CMD true', { test: ['CMD-SHELL', 'true'] }],
  ];
  it.each(cases)('%s', (line, expected) => {
    expect(one(line)).toMatchObject(expected);
  });

  it('leaves zero durations and retries unset', () => {
    const check = one('HEALTHCHECK --interval=0s --retries=0 CMD true');
    expect(check).not.toHaveProperty('interval');
    expect(check).not.toHaveProperty('retries');
  });

  const errors: [string, string][] = [
    ['HEALTHCHECK', 'HEALTHCHECK requires at least one argument'],
    ['HEALTHCHECK NONE now', 'HEALTHCHECK NONE takes no arguments'],
    ['HEALTHCHECK FOO x', 'Unknown type "FOO" in HEALTHCHECK (try CMD)'],
    ['HEALTHCHECK CMD', 'Missing command after HEALTHCHECK CMD'],
    ['HEALTHCHECK CMD []', 'Missing command after HEALTHCHECK CMD'],
    ['HEALTHCHECK --interval=1x CMD x', 'time: unknown unit "x" in duration "1x"'],
    ['HEALTHCHECK --interval=10 CMD x', 'time: missing unit in duration "10"'],
    ['HEALTHCHECK --timeout=abc CMD x', 'time: invalid duration "abc"'],
    ['HEALTHCHECK --interval=500us CMD x', 'Interval "interval" cannot be less than 1ms'],
    ['HEALTHCHECK --start-period=-1s CMD x', 'Interval "start-period" cannot be less than 1ms'],
    ['HEALTHCHECK --retries=-1 CMD x', '--retries cannot be negative (-1)'],
    ['HEALTHCHECK --retries=x CMD x', 'strconv.ParseInt: parsing "x": invalid syntax'],
    ['HEALTHCHECK --retries=99999999999 CMD x', 'strconv.ParseInt: parsing "99999999999": value out of range'],
    ['HEALTHCHECK --foo=1 CMD x', 'Unknown flag: foo'],
  ];
  it.each(errors)('%s fails: %s', (line, message) => {
    expect(failure(line)).toBe(message);
  });
});

describe('ONBUILD', () => {
  it('keeps the trigger text and parses it', () => {
    const onbuild = one('ONBUILD COPY --from=x . /app');
    expect(onbuild).toMatchObject({
      kind: 'ONBUILD',
      trigger: 'COPY --from=x . /app',
      parsed: { kind: 'COPY', from: 'x', sources: ['.'], dest: '/app', line: 2 },
    });
  });

  it('accepts lower case and continuation lines', () => {
    expect(one('onbuild   RUN echo a \\\n  b')).toMatchObject({ trigger: 'RUN echo a   b', parsed: { kind: 'RUN', command: 'echo a   b' } });
  });

  const errors: [string, string][] = [
    ['ONBUILD', 'ONBUILD requires at least one argument'],
    ['ONBUILD ONBUILD RUN x', 'Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed'],
    ['ONBUILD FROM x', "FROM isn't allowed as an ONBUILD trigger"],
    ['ONBUILD maintainer me', "MAINTAINER isn't allowed as an ONBUILD trigger"],
    ['ONBUILD FOO x', 'unknown instruction: FOO'],
    ['ONBUILD COPY a', 'COPY requires at least two arguments, but only one was provided. Destination could not be determined'],
  ];
  it.each(errors)('%s fails: %s', (line, message) => {
    expect(failure(line)).toBe(message);
  });

  it('parses triggers read back from an image config', () => {
    expect(parseOnbuildTrigger('COPY . /app', { line: 7 })).toMatchObject({ kind: 'COPY', sources: ['.'], dest: '/app', line: 7 });
    expect(parseOnbuildTrigger('RUN <<EOF\necho hi\nEOF')).toMatchObject({ kind: 'RUN', heredocs: [{ content: 'echo hi\n' }] });
    expect(() => parseOnbuildTrigger('FROM x')).toThrow("Dockerfile:1: FROM isn't allowed as an ONBUILD trigger");
    expect(() => parseOnbuildTrigger('RUN a\nRUN b', { line: 3 })).toThrow('Dockerfile:3: onbuild trigger should be a single expression');
  });
});

describe('FROM', () => {
  function stage(text: string) {
    return parseDockerfile(text).stages[0]!;
  }
  it('reads image, stage name (lowercased) and platform', () => {
    const s = stage('FROM --platform=$BUILDPLATFORM golang:1.22 AS Build-Env');
    expect(s).toMatchObject({ index: 0, name: 'build-env', baseName: 'golang:1.22', platform: '$BUILDPLATFORM', line: 1 });
    expect(s.from).toMatchObject({ kind: 'FROM', image: 'golang:1.22', name: 'build-env', platform: '$BUILDPLATFORM' });
  });
  it('accepts "as" in any case and names with dots, dashes and underscores', () => {
    expect(stage('FROM x as a.b-c_d').name).toBe('a.b-c_d');
    expect(stage('FROM x As A').name).toBe('a');
  });

  const errors: [string, string][] = [
    ['FROM', 'FROM requires either one or three arguments'],
    ['FROM a b', 'FROM requires either one or three arguments'],
    ['FROM a AS', 'FROM requires either one or three arguments'],
    ['FROM a FOR b', 'FROM requires either one or three arguments'],
    ['FROM a AS 1st', 'invalid name for build stage: "1st", name can\'t start with a number or contain symbols'],
    ['FROM a AS Bad!', 'invalid name for build stage: "Bad!", name can\'t start with a number or contain symbols'],
    ['FROM --platform a', 'Missing a value on flag: platform'],
    ['FROM --platform linux/amd64 a', 'FROM requires either one or three arguments'],
    ['FROM --plat=x a', 'Unknown flag: plat'],
  ];
  it.each(errors)('%s fails: %s', (line, message) => {
    try {
      parseDockerfile(`${line}\n`);
      throw new Error('expected failure');
    } catch (err) {
      expect(err).toBeInstanceOf(DockerfileError);
      expect((err as DockerfileError).detail).toBe(message);
    }
  });

  it('refuses duplicate stage names, case-insensitively', () => {
    try {
      parseDockerfile('FROM a AS build\nFROM b AS BUILD\n');
      throw new Error('expected failure');
    } catch (err) {
      expect((err as DockerfileError).message).toBe("Dockerfile:2: Duplicate stage name 'build', stage names should be unique");
    }
  });
});

describe('unknown instructions', () => {
  it.each([
    ['FOO bar', 'unknown instruction: FOO'],
    ['RUNN echo', 'unknown instruction: RUNN (did you mean RUN?)'],
    ['cpy a b', 'unknown instruction: CPY (did you mean COPY?)'],
    ['--flag x', 'unknown instruction: --FLAG'],
  ])('%s fails: %s', (line, message) => {
    expect(failure(line)).toBe(message);
  });
});
