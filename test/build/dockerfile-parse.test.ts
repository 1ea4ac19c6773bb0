import { describe, expect, it } from 'vitest';
import { DockerfileError, heredocBody, parseDockerfile } from '../../src/build/dockerfile/index.js';
import type { Instruction, RunInstruction } from '../../src/build/dockerfile/index.js';

function parseError(text: string, filename?: string): DockerfileError {
  try {
    parseDockerfile(text, filename === undefined ? {} : { filename });
  } catch (err) {
    if (err instanceof DockerfileError) return err;
    throw err;
  }
  throw new Error('expected a DockerfileError');
}

/** All instructions of all stages, FROM included, in file order. */
function all(text: string): Instruction[] {
  const ast = parseDockerfile(text);
  return [...ast.metaArgs, ...ast.stages.flatMap((s) => [s.from, ...s.instructions])].sort((a, b) => a.line - b.line);
}

describe('parser directives', () => {
  it('# escape=` makes the backtick the escape and continuation character', () => {
    const ast = parseDockerfile('# escape=`\nFROM windows\nRUN dir C:\\ `\n  && echo ok\n');
    expect(ast.escapeChar).toBe('`');
    const run = ast.stages[0]!.instructions[0] as RunInstruction;
    expect(run.command).toBe('dir C:\\   && echo ok');
    expect([run.line, run.endLine]).toEqual([3, 4]);
  });

  it('accepts blanks and any case around the directive', () => {
    expect(parseDockerfile('#  ESCAPE = `  \nFROM x').escapeChar).toBe('`');
    expect(parseDockerfile('   # escape=`\nFROM x').escapeChar).toBe('`');
  });

  it('records # syntax= and notes that it is ignored', () => {
    const ast = parseDockerfile('# syntax=docker/dockerfile:1.7\n# escape=`\nFROM x');
    expect(ast.syntax).toBe('docker/dockerfile:1.7');
    expect(ast.escapeChar).toBe('`');
    expect(ast.directiveNotes).toHaveLength(1);
    expect(ast.directiveNotes[0]).toMatch(/syntax directive "docker\/dockerfile:1.7" ignored/);
  });

  it('knows the check directive and ignores it with a note', () => {
    const ast = parseDockerfile('# check=skip=all\nFROM x');
    expect(ast.directiveNotes[0]).toMatch(/check directive "skip=all" ignored/);
  });

  const ignored: [string, string][] = [
    ['after a comment', '# hello\n# escape=`\nFROM x'],
    ['after a blank line', '\n# escape=`\nFROM x'],
    ['after an instruction', 'FROM x\n# escape=`\nRUN a'],
    ['after an unknown directive', '# foo=bar\n# escape=`\nFROM x'],
    ['without "="', '# escape `\nFROM x'],
  ];
  it.each(ignored)('is only a comment %s', (_why, text) => {
    expect(parseDockerfile(text).escapeChar).toBe('\\');
  });

  it('refuses a repeated directive', () => {
    const err = parseError('# escape=`\n# escape=\\\nFROM x');
    expect(err.detail).toBe('only one escape parser directive can be used');
    expect(err.line).toBe(2);
  });

  it('refuses an escape token other than \\ or `', () => {
    const err = parseError('# escape=x\nFROM x');
    expect(err.message).toBe("Dockerfile:1: invalid escape token 'x' does not match ` or \\");
  });

  it('strips a UTF-8 byte order mark', () => {
    expect(parseDockerfile('\uFEFF# escape=`\nFROM x').escapeChar).toBe('`');
    expect(parseDockerfile('\uFEFFFROM x').stages[0]!.baseName).toBe('x');
  });
});

describe('line continuations and comments', () => {
  it('joins continued lines as Docker prints them in Step N/M', () => {
    const [, run] = all('FROM x\nRUN apt-get update && \\\n    apt-get install -y curl\n');
    expect(run!.original).toBe('RUN apt-get update &&     apt-get install -y curl');
    expect([run!.line, run!.endLine]).toEqual([2, 3]);
  });

  it('allows blanks after the continuation escape', () => {
    const [, run] = all('FROM x\nRUN a \\ \t\n  b');
    expect(run!.original).toBe('RUN a   b');
  });

  it('skips comment lines (indented or not) inside a continuation', () => {
    const [, run] = all('FROM x\nRUN a \\\n# one\n    # two \\\n  b');
    expect(run!.original).toBe('RUN a   b');
    expect(run!.endLine).toBe(5);
  });

  it('skips empty continuation lines and warns like Docker', () => {
    const ast = parseDockerfile('FROM x\nRUN a \\\n\n   \n  b\n');
    expect((ast.stages[0]!.instructions[0] as RunInstruction).command).toBe('a   b');
    expect(ast.warnings).toEqual([{ line: 2, message: 'Empty continuation line found in: RUN a   b' }]);
  });

  it('does not treat an escaped escape at the end of a line as a continuation', () => {
    const instructions = all('FROM x\nRUN echo \\\\\nRUN echo two');
    expect(instructions.map((i) => i.original)).toEqual(['FROM x', 'RUN echo \\\\', 'RUN echo two']);
  });

  it('continues through a line that is only the escape character', () => {
    const [, run] = all('FROM x\nRUN a \\\n\\\n  b');
    expect(run!.original).toBe('RUN a   b');
  });

  it('ends the instruction at end of file even after a continuation', () => {
    const [, run] = all('FROM x\nRUN a \\');
    expect(run!.original).toBe('RUN a');
  });

  it('handles CRLF line endings', () => {
    const instructions = all('FROM x\r\nRUN a \\\r\n  b\r\nCMD ["c"]\r\n');
    expect(instructions.map((i) => i.original)).toEqual(['FROM x', 'RUN a   b', 'CMD ["c"]']);
  });

  it('keeps a # that is not at the start of a line', () => {
    const [, run] = all('FROM x\nRUN echo a # not a comment');
    expect(run!.original).toBe('RUN echo a # not a comment');
  });

  it('accepts indented and lower-case instructions and counts lines across comments and blanks', () => {
    const instructions = all('# c\n\n  from x\n\n\trun echo\n# c\n  cmd ["a"]\n');
    expect(instructions.map((i) => [i.kind, i.line])).toEqual([
      ['FROM', 3],
      ['RUN', 5],
      ['CMD', 7],
    ]);
  });
});

describe('heredocs', () => {
  it('reads a RUN heredoc body', () => {
    const [, run] = all('FROM x\nRUN <<EOF\necho hi\necho there\nEOF\nCMD ["x"]') as [Instruction, RunInstruction];
    expect(run.heredocs).toEqual([{ name: 'EOF', content: 'echo hi\necho there\n', expand: true, chomp: false, fileDescriptor: 0 }]);
    expect(run.original).toBe('RUN <<EOF');
    expect([run.line, run.endLine]).toEqual([2, 5]);
  });

  it('<<- strips leading tabs from the terminator and (via heredocBody) the body', () => {
    const [, run] = all('FROM x\nRUN <<-EOT\n\t\techo hi\n\tEOT\n') as [Instruction, RunInstruction];
    expect(run.heredocs[0]!.content).toBe('\t\techo hi\n');
    expect(run.heredocs[0]!.chomp).toBe(true);
    expect(heredocBody(run.heredocs[0]!)).toBe('echo hi\n');
  });

  it('a quoted delimiter disables expansion', () => {
    const heredocs = (all('FROM x\nRUN <<"A" <<\'B\' <<C\na\nA\nb\nB\nc\nC') [1] as RunInstruction).heredocs;
    expect(heredocs.map((h) => [h.name, h.expand, h.content])).toEqual([
      ['A', false, 'a\n'],
      ['B', false, 'b\n'],
      ['C', true, 'c\n'],
    ]);
  });

  it('finds heredocs anywhere in a shell command, with file descriptors', () => {
    const run = all('FROM x\nRUN cat <<EOF > /a && cat 3<<X\none\nEOF\ntwo\nX')[1] as RunInstruction;
    expect(run.command).toBe('cat <<EOF > /a && cat 3<<X');
    expect(run.heredocs.map((h) => [h.name, h.fileDescriptor, h.content])).toEqual([
      ['EOF', 0, 'one\n'],
      ['X', 3, 'two\n'],
    ]);
  });

  it('keeps an empty body and only matches the exact terminator', () => {
    const run = all('FROM x\nRUN <<EOF\n EOF\nEOFX\nEOF')[1] as RunInstruction;
    expect(run.heredocs[0]!.content).toBe(' EOF\nEOFX\n');
    expect((all('FROM x\nRUN <<EOF\nEOF')[1] as RunInstruction).heredocs[0]!.content).toBe('');
  });

  const notHeredocs: [string, string][] = [
    ['quoted', 'RUN echo "<<EOF"'],
    ['glued to a word', 'RUN cat<<EOF'],
    ['exec form', 'RUN ["cat", "<<EOF"]'],
    ['on ENV', 'ENV A <<EOF'],
    ['with a blank after <<', 'RUN cat << EOF'],
  ];
  it.each(notHeredocs)('is no heredoc when %s', (_why, line) => {
    const instructions = all(`FROM x\n${line}\nLABEL a=b`);
    expect(instructions.map((i) => i.kind)).toEqual(['FROM', line.split(' ')[0], 'LABEL']);
  });

  it('refuses an unterminated heredoc', () => {
    const err = parseError('FROM x\nRUN <<EOF\necho hi\n');
    expect(err.detail).toBe('unterminated heredoc');
    expect([err.line, err.endLine]).toEqual([2, 3]);
  });

  it('supports COPY heredocs as inline sources', () => {
    const copy = all('FROM x\nCOPY <<a.txt <<b.txt src /dst/\nA\na.txt\nB\nb.txt')[1];
    expect(copy).toMatchObject({
      kind: 'COPY',
      sources: ['src'],
      dest: '/dst/',
      heredocs: [
        { name: 'a.txt', content: 'A\n' },
        { name: 'b.txt', content: 'B\n' },
      ],
    });
  });

  it('refuses a heredoc as the COPY destination', () => {
    expect(parseError('FROM x\nCOPY a <<EOF\nx\nEOF').detail).toBe('COPY cannot accept a heredoc as a destination');
  });

  it('attaches heredocs to an ONBUILD trigger', () => {
    const onbuild = all('FROM x\nONBUILD RUN <<EOF\necho hi\nEOF')[1]!;
    expect(onbuild).toMatchObject({ kind: 'ONBUILD', trigger: 'RUN <<EOF\necho hi\nEOF' });
    if (onbuild.kind !== 'ONBUILD') throw new Error('unreachable');
    expect(onbuild.parsed).toMatchObject({ kind: 'RUN', command: '<<EOF', heredocs: [{ name: 'EOF', content: 'echo hi\n' }] });
  });
});

describe('whole-file structure', () => {
  it('splits meta ARGs and stages', () => {
    const ast = parseDockerfile('ARG A=1\nARG B\nFROM x AS Build\nRUN a\nFROM build\nCOPY --from=build /a /b\n');
    expect(ast.metaArgs.map((a) => a.args)).toEqual([[{ name: 'A', default: '1' }], [{ name: 'B' }]]);
    expect(ast.stages.map((s) => [s.index, s.name, s.baseName, s.line, s.instructions.map((i) => i.kind)])).toEqual([
      [0, 'build', 'x', 3, ['RUN']],
      [1, undefined, 'build', 5, ['COPY']],
    ]);
  });

  it('refuses an empty file or one with only comments', () => {
    expect(parseError('').detail).toBe('file with no instructions');
    expect(parseError('# just a comment\n\n').detail).toBe('file with no instructions');
  });

  it('refuses instructions before the first FROM (other than ARG)', () => {
    const err = parseError('ARG A\nRUN echo\nFROM x');
    expect(err.message).toBe('Dockerfile:2: no build stage in current context');
  });

  it('puts the file name in messages', () => {
    expect(parseError('FROM x\nFOO bar', 'app.Dockerfile').message).toBe('app.Dockerfile:2: unknown instruction: FOO');
  });

  it('reports the structure error before instruction errors, like Docker', () => {
    expect(parseError('FROM x\nFOO\nRUN <<EOF\n').detail).toBe('unterminated heredoc');
  });
});
