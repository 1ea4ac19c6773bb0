import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  EMPTY_LAYER_DIFF_ID,
  createdBy,
  directorySourceHash,
  expandInstruction,
  isEmptyLayer,
  multiSourceHash,
  normalizeWorkdir,
  parseDockerfile,
  resolveRunCommand,
} from '../../src/build/dockerfile/index.js';
import type { HistoryContext, Instruction, RunInstruction } from '../../src/build/dockerfile/index.js';

const env = { VERSION: '1.0', APP: '/app' };

function instruction(line: string): Instruction {
  const ast = parseDockerfile(`FROM base\n${line}\n`);
  return expandInstruction(ast.stages[0]!.instructions[0]!, env);
}

const FILE = 'file:e57eef017a414ca793499729d80a7b9075790c9a804f930f1417e56d506970cf';
const DIR = 'dir:5d68d27cc15a80653c93d3a0b262a28112d47a46326ff5fc2dfbf7fa3b9a0ce8';

// Expected strings follow moby builder/dockerfile: dispatchers.go (commit
// messages) and internals.go (withCmdComment: "#(nop) " as its own argument,
// hence two spaces; withCmdCommentString for WORKDIR/COPY/ADD: one argument).
const table: [string, HistoryContext, string][] = [
  ['ENV A=b', {}, '/bin/sh -c #(nop)  ENV A=b'],
  ['ENV A=1 B="x y" C=$VERSION', {}, '/bin/sh -c #(nop)  ENV A=1 B=x y C=1.0'],
  ['ENV LEGACY some value', {}, '/bin/sh -c #(nop)  ENV LEGACY=some value'],
  ['LABEL maintainer="NGINX Docker Maintainers <docker-maint@nginx.com>"', {}, '/bin/sh -c #(nop)  LABEL maintainer=NGINX Docker Maintainers <docker-maint@nginx.com>'],
  ['LABEL a=b c=d', {}, '/bin/sh -c #(nop)  LABEL a=b c=d'],
  ['CMD ["sh"]', {}, '/bin/sh -c #(nop)  CMD ["sh"]'],
  ['CMD ["nginx", "-g", "daemon off;"]', {}, '/bin/sh -c #(nop)  CMD ["nginx" "-g" "daemon off;"]'],
  ['CMD echo "hi $HOME"', {}, '/bin/sh -c #(nop)  CMD ["/bin/sh" "-c" "echo \\"hi $HOME\\""]'],
  ['CMD []', {}, '/bin/sh -c #(nop)  CMD []'],
  ['CMD ["tab\\there", "é", "\\u0001"]', {}, '/bin/sh -c #(nop)  CMD ["tab\\there" "é" "\\x01"]'],
  ['ENTRYPOINT ["/docker-entrypoint.sh"]', {}, '/bin/sh -c #(nop)  ENTRYPOINT ["/docker-entrypoint.sh"]'],
  ['ENTRYPOINT exec app', {}, '/bin/sh -c #(nop)  ENTRYPOINT ["/bin/sh" "-c" "exec app"]'],
  ['ENTRYPOINT []', {}, '/bin/sh -c #(nop)  ENTRYPOINT []'],
  ['EXPOSE 80', {}, '/bin/sh -c #(nop)  EXPOSE 80'],
  ['EXPOSE 8080 80/tcp 53/udp', {}, '/bin/sh -c #(nop)  EXPOSE 53/udp 80/tcp 8080'],
  ['VOLUME /data', {}, '/bin/sh -c #(nop)  VOLUME [/data]'],
  ['VOLUME ["/var/lib/x", "$APP/logs"]', {}, '/bin/sh -c #(nop)  VOLUME [/var/lib/x /app/logs]'],
  ['USER www-data', {}, '/bin/sh -c #(nop)  USER www-data'],
  ['STOPSIGNAL SIGQUIT', {}, '/bin/sh -c #(nop)  STOPSIGNAL SIGQUIT'],
  ['MAINTAINER Jane <jane@example.com>', {}, '/bin/sh -c #(nop)  MAINTAINER Jane <jane@example.com>'],
  ['ARG VERSION=2.0', {}, '/bin/sh -c #(nop)  ARG VERSION=2.0'],
  ['ARG A B=$APP', {}, '/bin/sh -c #(nop)  ARG A B=/app'],
  ['ONBUILD RUN echo $APP', {}, '/bin/sh -c #(nop)  ONBUILD RUN echo $APP'],
  ['SHELL ["/bin/bash", "-o", "pipefail", "-c"]', {}, '/bin/bash -o pipefail -c #(nop)  SHELL [/bin/bash -o pipefail -c]'],
  [
    'HEALTHCHECK --interval=5m --timeout=3s CMD curl -f http://localhost/ || exit 1',
    {},
    '/bin/sh -c #(nop)  HEALTHCHECK &{["CMD-SHELL" "curl -f http://localhost/ || exit 1"] "5m0s" "3s" "0s" "0s" \'\\x00\'}',
  ],
  [
    'HEALTHCHECK --interval=90s --start-period=1.5s --start-interval=250ms --retries=3 CMD ["/bin/check"]',
    {},
    '/bin/sh -c #(nop)  HEALTHCHECK &{["CMD" "/bin/check"] "1m30s" "0s" "1.5s" "250ms" \'\\x03\'}',
  ],
  ['HEALTHCHECK NONE', {}, '/bin/sh -c #(nop)  HEALTHCHECK &{["NONE"] "0s" "0s" "0s" "0s" \'\\x00\'}'],
  ['WORKDIR /app', {}, '/bin/sh -c #(nop) WORKDIR /app'],
  ['WORKDIR src', { workingDir: '/app' }, '/bin/sh -c #(nop) WORKDIR /app/src'],
  ['WORKDIR ../lib/./x', { workingDir: '/app/src' }, '/bin/sh -c #(nop) WORKDIR /app/lib/x'],
  ['WORKDIR /abs/', { workingDir: '/app' }, '/bin/sh -c #(nop) WORKDIR /abs/'],
  ['COPY . /app', { sourceHashes: [DIR] }, `/bin/sh -c #(nop) COPY ${DIR} in /app `],
  ['COPY docker-entrypoint.sh /', { sourceHashes: [FILE] }, `/bin/sh -c #(nop) COPY ${FILE} in / `],
  ['COPY --chown=101:101 a $APP/', { sourceHashes: [FILE] }, `/bin/sh -c #(nop) COPY --chown=101:101${FILE} in /app/ `],
  ['COPY a b /dst/', { sourceHashes: [FILE, DIR] }, `/bin/sh -c #(nop) COPY ${multiSourceHash([FILE, DIR])} in /dst/ `],
  ['ADD rootfs.tar.xz /', { sourceHashes: [FILE] }, `/bin/sh -c #(nop) ADD ${FILE} in / `],
  ['RUN apt-get update && apt-get install -y curl', {}, '/bin/sh -c apt-get update && apt-get install -y curl'],
  ['RUN make VERSION=$VERSION', { buildArgs: ['VERSION=1.0'] }, '|1 VERSION=1.0 /bin/sh -c make VERSION=$VERSION'],
  ['RUN make', { buildArgs: ['A=1', 'B=2'] }, '|2 A=1 B=2 /bin/sh -c make'],
  ['RUN curl http://x', { buildArgs: [] }, '|0 /bin/sh -c curl http://x'],
  ['RUN ["echo", "hi"]', { buildArgs: ['A=1'] }, '|1 A=1 echo hi'],
  ['RUN set -e; make', { shell: ['/bin/bash', '-c'] }, '/bin/bash -c set -e; make'],
];

describe('createdBy (classic builder created_by strings)', () => {
  it.each(table)('%s', (line, ctx, expected) => {
    expect(createdBy(instruction(line), ctx)).toBe(expected);
  });

  it('uses the SHELL in effect for #(nop) entries', () => {
    expect(createdBy(instruction('ENV A=b'), { shell: ['/bin/bash', '-c'] })).toBe('/bin/bash -c #(nop)  ENV A=b');
    expect(createdBy(instruction('CMD run'), { shell: ['pwsh', '-c'] })).toBe('pwsh -c #(nop)  CMD ["pwsh" "-c" "run"]');
  });

  it('hashes several sources, and directories, as Docker does', () => {
    const expected = 'multi:' + createHash('sha256').update(`${FILE},${DIR}`).digest('hex');
    expect(multiSourceHash([FILE, DIR])).toBe(expected);
    expect(directorySourceHash(['b', 'a', 'C'])).toBe('dir:' + createHash('sha256').update('C,a,b').digest('hex'));
  });

  it('refuses what has no history or lacks context', () => {
    const ast = parseDockerfile('FROM base\nCOPY a b\n');
    expect(() => createdBy(ast.stages[0]!.from)).toThrow(/FROM creates no history entry/);
    expect(() => createdBy(ast.stages[0]!.instructions[0]!)).toThrow(/content hashes/);
  });
});

describe('RUN heredocs (BuildKit execution)', () => {
  function run(text: string): RunInstruction {
    return parseDockerfile(`FROM base\n${text}\n`).stages[0]!.instructions[0] as RunInstruction;
  }

  it('runs a lone heredoc body through the shell', () => {
    expect(resolveRunCommand(run('RUN <<-EOF\n\techo hi\n\tEOF'))).toEqual({ args: ['/bin/sh', '-c', 'echo hi\n'], files: [] });
    expect(createdBy(run('RUN <<EOF\necho hi\nEOF'))).toBe('/bin/sh -c echo hi\n');
  });

  it('runs a body starting with #! as a script file', () => {
    expect(resolveRunCommand(run('RUN <<script.py\n#!/usr/bin/env python3\nprint(1)\nscript.py'))).toEqual({
      args: ['/bin/sh', '-c', '/dev/pipes/script.py'],
      files: [{ path: '/dev/pipes/script.py', content: '#!/usr/bin/env python3\nprint(1)\n', mode: 0o755 }],
    });
  });

  it('hands other heredoc commands to the shell with bodies re-attached', () => {
    expect(resolveRunCommand(run('RUN cat <<A > /a && cat <<B > /b\none\nA\ntwo\nB')).args).toEqual([
      '/bin/sh',
      '-c',
      'cat <<A > /a && cat <<B > /b\none\nA\ntwo\nB',
    ]);
  });
});

describe('empty_layer', () => {
  it('is always set for metadata instructions', () => {
    for (const line of ['ENV A=b', 'LABEL a=b', 'CMD ["x"]', 'ENTRYPOINT ["x"]', 'EXPOSE 80', 'VOLUME /v', 'USER u', 'STOPSIGNAL 9', 'ARG A', 'SHELL ["sh"]', 'HEALTHCHECK NONE', 'ONBUILD RUN x', 'MAINTAINER m']) {
      expect(isEmptyLayer(instruction(line))).toBe(true);
    }
  });

  it('depends on the layer diff for RUN, COPY, ADD and WORKDIR', () => {
    for (const line of ['RUN true', 'COPY a b', 'ADD a b', 'WORKDIR /w']) {
      expect(isEmptyLayer(instruction(line), true)).toBe(true);
      expect(isEmptyLayer(instruction(line), false)).toBe(false);
      expect(() => isEmptyLayer(instruction(line))).toThrow(/layer diff/);
    }
  });

  it('names the empty layer diff id', () => {
    expect(EMPTY_LAYER_DIFF_ID).toBe('sha256:' + createHash('sha256').update(Buffer.alloc(1024)).digest('hex'));
  });
});

describe('normalizeWorkdir', () => {
  it.each([
    ['', '/app', '/app'],
    ['', 'app', '/app'],
    ['/a', 'b/../c', '/a/c'],
    ['/a', '/x//y/', '/x//y/'],
  ])('%s + %s -> %s', (current, requested, expected) => {
    expect(normalizeWorkdir(current, requested)).toBe(expected);
  });
});
