/**
 * Golden files from buildkit's parser test suite
 * (frontend/dockerfile/parser/testfiles/{docker,health}), compared against
 * buildkit's AST dump (`(cmd "arg" ...)`, arguments Go-quoted).
 */
import { describe, expect, it } from 'vitest';
import { DockerfileError, parseDockerfile } from '../../src/build/dockerfile/index.js';
import type { Instruction } from '../../src/build/dockerfile/index.js';
import { goQuote } from '../../src/build/dockerfile/gocompat.js';

function flagWords(i: Instruction): string[] {
  return Object.entries(i.flags).flatMap(([k, v]) => (Array.isArray(v) ? v.map((x) => `--${k}=${x}`) : [v === true ? `--${k}` : `--${k}=${v}`]));
}

/** buildkit's Node.Dump for the instructions of our typed model. */
function dump(i: Instruction): string {
  let args: string[];
  switch (i.kind) {
    case 'FROM':
      args = i.name ? [i.image, 'AS', i.name] : [i.image];
      break;
    case 'ENV':
    case 'LABEL':
      args = i.pairs.flat();
      break;
    case 'RUN':
    case 'CMD':
    case 'ENTRYPOINT':
      args = i.form === 'exec' ? i.command : [i.command];
      break;
    case 'COPY':
    case 'ADD':
      args = [...i.sources, i.dest];
      break;
    case 'VOLUME':
      args = i.paths;
      break;
    case 'WORKDIR':
      args = [i.path];
      break;
    case 'HEALTHCHECK':
      args = i.none ? ['NONE'] : i.test[0] === 'CMD-SHELL' ? ['CMD', i.test[1]!] : ['CMD', ...i.test.slice(1)];
      break;
    default:
      throw new Error(`no dump for ${i.kind}`);
  }
  const flags = flagWords(i);
  const head = flags.length ? `${i.kind.toLowerCase()} [${flags.map(goQuote).join(' ')}]` : i.kind.toLowerCase();
  return `(${[head, ...args.map(goQuote)].join(' ')})`;
}

const dockerDockerfile = [
  '# This file describes the standard way to build Docker, using docker',
  '#',
  '# Usage:',
  '#',
  '# # Assemble the full dev environment. This is slow the first time.',
  '# docker build -t docker .',
  '#',
  '',
  'FROM\tubuntu:14.04',
  'LABEL\tmaintainer\tTianon Gravi <admwiggin@gmail.com> (@tianon)',
  '',
  '# Packaged dependencies',
  'RUN\tapt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -yq \\',
  '\tapt-utils \\',
  '\taufs-tools \\',
  '\ts3cmd=1.1.0* \\',
  '\t--no-install-recommends',
  '',
  'RUN\tcurl -sSL https://golang.org/dl/go1.3.src.tar.gz | tar -v -C /usr/local -xz',
  'ENV\tPATH\t/usr/local/go/bin:$PATH',
  'ENV\tGOPATH\t/go:/go/src/github.com/docker/docker/vendor',
  '',
  '# Compile Go for cross compilation',
  'ENV\tDOCKER_CROSSPLATFORMS\t\\',
  '\tlinux/386 linux/arm \\',
  '\tdarwin/amd64 darwin/386 \\',
  '\tfreebsd/amd64 freebsd/386 freebsd/arm',
  '# (set an explicit GOARM of 5 for maximum compatibility)',
  'ENV\tGOARM\t5',
  "RUN\tcd /usr/local/go/src && bash -xc 'for platform in $DOCKER_CROSSPLATFORMS; do GOOS=${platform%/*} GOARCH=${platform##*/} ./make.bash --no-clean 2>&1; done'",
  "RUN\t/bin/echo -e '[default]\\naccess_key=$AWS_ACCESS_KEY\\nsecret_key=$AWS_SECRET_KEY' > /.s3cfg",
  'RUN groupadd -r docker',
  'VOLUME\t/var/lib/docker',
  'WORKDIR\t/go/src/github.com/docker/docker',
  'ENV\tDOCKER_BUILDTAGS\tapparmor selinux',
  '',
  '# Wrap all commands in the "docker-in-docker" script to allow nested containers',
  'ENTRYPOINT\t["hack/dind"]',
  '',
  '# Upload docker source',
  'COPY\t.\t/go/src/github.com/docker/docker',
  '',
].join('\n');

const dockerResult = [
  '(from "ubuntu:14.04")',
  '(label "maintainer" "Tianon Gravi <admwiggin@gmail.com> (@tianon)")',
  '(run "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -yq \\tapt-utils \\taufs-tools \\ts3cmd=1.1.0* \\t--no-install-recommends")',
  '(run "curl -sSL https://golang.org/dl/go1.3.src.tar.gz | tar -v -C /usr/local -xz")',
  '(env "PATH" "/usr/local/go/bin:$PATH")',
  '(env "GOPATH" "/go:/go/src/github.com/docker/docker/vendor")',
  '(env "DOCKER_CROSSPLATFORMS" "linux/386 linux/arm \\tdarwin/amd64 darwin/386 \\tfreebsd/amd64 freebsd/386 freebsd/arm")',
  '(env "GOARM" "5")',
  '(run "cd /usr/local/go/src && bash -xc \'for platform in $DOCKER_CROSSPLATFORMS; do GOOS=${platform%/*} GOARCH=${platform##*/} ./make.bash --no-clean 2>&1; done\'")',
  '(run "/bin/echo -e \'[default]\\\\naccess_key=$AWS_ACCESS_KEY\\\\nsecret_key=$AWS_SECRET_KEY\' > /.s3cfg")',
  '(run "groupadd -r docker")',
  '(volume "/var/lib/docker")',
  '(workdir "/go/src/github.com/docker/docker")',
  '(env "DOCKER_BUILDTAGS" "apparmor selinux")',
  '(entrypoint "hack/dind")',
  '(copy "." "/go/src/github.com/docker/docker")',
];

describe('buildkit parser golden files', () => {
  it('testfiles/docker', () => {
    const ast = parseDockerfile(dockerDockerfile);
    const dumped = ast.stages.flatMap((s) => [s.from, ...s.instructions]).map(dump);
    expect(dumped).toEqual(dockerResult);
  });

  it('testfiles/health (the lines that also pass instruction parsing)', () => {
    const text = [
      'FROM debian',
      'ADD check.sh main.sh /app/',
      'CMD /app/main.sh',
      'HEALTHCHECK --interval=5s --timeout=3s --retries=3 \\',
      '  CMD /app/check.sh --quiet',
      'HEALTHCHECK   CMD   a b',
      'HEALTHCHECK --timeout=3s CMD ["foo"]',
      'HEALTHCHECK --start-period=0s --interval=5s --timeout=0s --retries=0 CMD ["foo"]',
    ].join('\n');
    const ast = parseDockerfile(text);
    expect(ast.stages.flatMap((s) => [s.from, ...s.instructions]).map(dump)).toEqual([
      '(from "debian")',
      '(add "check.sh" "main.sh" "/app/")',
      '(cmd "/app/main.sh")',
      '(healthcheck ["--interval=5s" "--timeout=3s" "--retries=3"] "CMD" "/app/check.sh --quiet")',
      '(healthcheck "CMD" "a b")',
      '(healthcheck ["--timeout=3s"] "CMD" "foo")',
      '(healthcheck ["--start-period=0s" "--interval=5s" "--timeout=0s" "--retries=0"] "CMD" "foo")',
    ]);
  });

  it.each([
    ['HEALTHCHECK', 'HEALTHCHECK requires at least one argument'],
    ['HEALTHCHECK CMD', 'Missing command after HEALTHCHECK CMD'],
    ['HEALTHCHECK CONNECT TCP 7000', 'Unknown type "CONNECT" in HEALTHCHECK (try CMD)'],
  ])('testfiles/health line %j is refused when typed', (line, message) => {
    expect(() => parseDockerfile(`FROM debian\n${line}\n`)).toThrow(DockerfileError);
    expect(() => parseDockerfile(`FROM debian\n${line}\n`)).toThrow(message);
  });
});
