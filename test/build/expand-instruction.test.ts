import { describe, expect, it } from 'vitest';
import {
  DockerfileError,
  EXPANDING_INSTRUCTIONS,
  ShellExpansionError,
  expandInstruction,
  parseDockerfile,
} from '../../src/build/dockerfile/index.js';
import type { Instruction } from '../../src/build/dockerfile/index.js';

const env = { APP: '/app', USERNAME: 'web', PORTS: '80 443/udp', SIG: 'SIGQUIT', NAME: 'my file', V: '1.2', E: '' };

function expanded(line: string, escape: '\\' | '`' = '\\'): Instruction {
  const prefix = escape === '`' ? '# escape=`\n' : '';
  const ast = parseDockerfile(`${prefix}FROM base\n${line}\n`);
  return expandInstruction(ast.stages[0]!.instructions[0]!, env, ast.escapeChar);
}

describe('EXPANDING_INSTRUCTIONS', () => {
  it('is the set Docker substitutes at dispatch', () => {
    expect([...EXPANDING_INSTRUCTIONS].sort()).toEqual(
      ['ADD', 'ARG', 'COPY', 'ENV', 'EXPOSE', 'FROM', 'LABEL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR'].sort(),
    );
    for (const kind of ['RUN', 'CMD', 'ENTRYPOINT', 'SHELL', 'HEALTHCHECK', 'ONBUILD', 'MAINTAINER'] as const) {
      expect(EXPANDING_INSTRUCTIONS.has(kind)).toBe(false);
    }
  });
});

describe('expandInstruction', () => {
  const cases: [string, object][] = [
    ['ENV A=$APP/bin B="$USERNAME home" C=\'$APP\'', { pairs: [['A', '/app/bin'], ['B', 'web home'], ['C', '$APP']] }],
    ['ENV PATH ${APP}/bin:$PATH', { pairs: [['PATH', '/app/bin:']] }],
    ['ENV $USERNAME=x', { pairs: [['web', 'x']] }],
    ['LABEL "app dir"="$APP" version=$V', { pairs: [['app dir', '/app'], ['version', '1.2']] }],
    ['ARG A=$APP B C=${E:-def}', { args: [{ name: 'A', default: '/app' }, { name: 'B' }, { name: 'C', default: 'def' }] }],
    ['WORKDIR $APP/src', { path: '/app/src' }],
    ['WORKDIR "$NAME"', { path: 'my file' }],
    ['USER ${USERNAME}:${USERNAME}', { user: 'web:web' }],
    ['STOPSIGNAL $SIG', { signal: 'SIGQUIT' }],
    ['VOLUME $APP/data ["x"]', { paths: ['/app/data', '[x]'] }],
    ['VOLUME ["$APP/data", "/b"]', { paths: ['/app/data', '/b'] }],
    ['EXPOSE 8080 $PORTS', { ports: ['80', '443/udp', '8080'] }],
    ['EXPOSE "$PORTS"', { ports: ['80 443/udp'] }],
    [
      'COPY --chown=$USERNAME --chmod=$V src/$NAME "$APP/a" $APP/',
      { chown: 'web', chmod: '1.2', sources: ['src/my file', '/app/a'], dest: '/app/' },
    ],
    ['COPY ["$NAME", "$APP"]', { sources: ['my file'], dest: '/app' }],
    ['ADD --checksum=sha256:$V --exclude=$NAME x $APP', { checksum: 'sha256:1.2', exclude: ['my file'], dest: '/app' }],
    ['RUN echo $APP', { command: 'echo $APP' }],
    ['CMD ["$APP"]', { command: ['$APP'] }],
    ['HEALTHCHECK CMD curl $APP', { test: ['CMD-SHELL', 'curl $APP'] }],
    ['ONBUILD RUN echo $APP', { trigger: 'RUN echo $APP' }],
    ['MAINTAINER $USERNAME', { name: '$USERNAME' }],
  ];
  it.each(cases)('%s', (line, expected) => {
    expect(expanded(line)).toMatchObject(expected);
  });

  it('splits shell-form COPY sources before expanding, so a quoted blank breaks the word (as in Docker)', () => {
    expect(() => expanded('COPY "a b" /dst')).toThrow('failed to process "\\"a": unexpected end of statement while looking for matching double-quote');
  });

  it('leaves the parsed instruction untouched', () => {
    const ast = parseDockerfile('FROM b\nWORKDIR $APP\n');
    const original = ast.stages[0]!.instructions[0]!;
    expandInstruction(original, env);
    expect(original).toMatchObject({ path: '$APP' });
  });

  it('uses the Dockerfile escape character', () => {
    expect(expanded('WORKDIR C:\\`$APP', '`')).toMatchObject({ path: 'C:\\$APP' });
  });

  it('expands COPY heredoc bodies with quotes kept, but not quoted-delimiter ones', () => {
    const ast = parseDockerfile('FROM b\nCOPY <<a <<"b" /dst/\necho "$APP" \\$x\na\necho "$APP"\nb\n');
    const copy = expandInstruction(ast.stages[0]!.instructions[0]!, env);
    expect(copy).toMatchObject({ heredocs: [{ name: 'a', content: 'echo "/app" $x\n' }, { name: 'b', content: 'echo "$APP"\n' }] });
  });

  it('strips <<- tabs before substituting, returning the final body', () => {
    const ast = parseDockerfile('FROM b\nCOPY <<-a /x\n\techo $APP\n\ta\n');
    const copy = expandInstruction(ast.stages[0]!.instructions[0]!, env);
    expect(copy).toMatchObject({ heredocs: [{ name: 'a', content: 'echo /app\n', chomp: false }] });
  });

  it('expands RUN --mount values and validates them then', () => {
    const ast = parseDockerfile('FROM b\nRUN --mount=type=$T,target=$APP/cache,mode=$M true\n');
    const run = expandInstruction(ast.stages[0]!.instructions[0]!, { T: 'cache', APP: '/app', M: '0700' });
    expect(run).toMatchObject({ mounts: [{ type: 'cache', target: '/app/cache', mode: 0o700, readOnly: false }] });
    try {
      expandInstruction(ast.stages[0]!.instructions[0]!, { T: 'bind', M: '0700' });
      throw new Error('expected failure');
    } catch (err) {
      expect(err).toBeInstanceOf(DockerfileError);
      expect((err as DockerfileError).message).toBe('Dockerfile:2: mode not allowed for "bind" type mounts');
    }
  });

  it('reports lexer errors at the instruction line, keeping the cause', () => {
    const ast = parseDockerfile('FROM b\n\nWORKDIR ${DIR:?set DIR}\n');
    try {
      expandInstruction(ast.stages[0]!.instructions[0]!, {}, '\\', { filename: 'Containerfile' });
      throw new Error('expected failure');
    } catch (err) {
      expect(err).toBeInstanceOf(DockerfileError);
      expect((err as DockerfileError).message).toBe('Containerfile:3: failed to process "${DIR:?set DIR}": DIR: set DIR');
      expect((err as Error).cause).toBeInstanceOf(ShellExpansionError);
    }
  });

  it('expands FROM with the given (meta) variables', () => {
    const ast = parseDockerfile('ARG TAG\nFROM --platform=$P alpine:${TAG:-latest} AS x\n');
    expect(expandInstruction(ast.stages[0]!.from, { P: 'linux/arm64' })).toMatchObject({ image: 'alpine:latest', platform: 'linux/arm64' });
  });
});
