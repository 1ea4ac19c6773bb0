/**
 * Why the parser does its own structure pass: each case is one where the
 * pinned dockerfile-ast reads a Dockerfile differently from Docker (buildkit's
 * parser), next to what strata does. If dockerfile-ast ever agrees with Docker
 * on all of them, it could take over the structure pass again.
 */
import { DockerfileParser } from 'dockerfile-ast';
import { describe, expect, it } from 'vitest';
import { DockerfileError, parseDockerfile } from '../../src/build/dockerfile/index.js';

function ours(text: string): { escape: string; instructions: string[] } | string {
  try {
    const ast = parseDockerfile(text);
    const instructions = ast.stages.flatMap((s) => [s.from, ...s.instructions]).map((i) => i.original);
    return { escape: ast.escapeChar, instructions };
  } catch (err) {
    if (err instanceof DockerfileError) return err.detail;
    throw err;
  }
}

function theirs(text: string): { escape: string; instructions: string[] } {
  const df = DockerfileParser.parse(text);
  return { escape: df.getEscapeCharacter(), instructions: df.getInstructions().map((i) => i.getKeyword()) };
}

describe('structure cases where dockerfile-ast differs from Docker', () => {
  it('an escape directive after an unknown directive is only a comment', () => {
    const text = '# foo=bar\n# escape=`\nFROM x\n';
    expect(theirs(text).escape).toBe('`');
    expect(ours(text)).toMatchObject({ escape: '\\' });
  });

  it('a repeated or invalid escape directive is an error', () => {
    expect(theirs('# escape=`\n# escape=\\\nFROM x').escape).toBe('`');
    expect(ours('# escape=`\n# escape=\\\nFROM x')).toBe('only one escape parser directive can be used');
    expect(theirs('# escape=x\nFROM x').escape).toBe('\\');
    expect(ours('# escape=x\nFROM x')).toBe("invalid escape token 'x' does not match ` or \\");
  });

  it('an escaped escape at the end of a line does not continue it', () => {
    const text = 'FROM x\nRUN foo \\\\\nRUN bar\n';
    expect(theirs(text).instructions).toEqual(['FROM', 'RUN']);
    expect(ours(text)).toMatchObject({ instructions: ['FROM x', 'RUN foo \\\\', 'RUN bar'] });
  });

  it('an unterminated heredoc is an error', () => {
    const text = 'FROM x\nRUN <<EOF\nnever ends\n';
    expect(theirs(text).instructions).toEqual(['FROM', 'RUN']);
    expect(ours(text)).toBe('unterminated heredoc');
  });

  it('comment lines inside a continuation are dropped from the instruction', () => {
    const text = 'FROM x\nRUN a \\\n    # note\n  b\n';
    const df = DockerfileParser.parse(text);
    expect(df.getInstructions()[1]!.getArgumentsContent()).toContain('# note');
    expect(ours(text)).toMatchObject({ instructions: ['FROM x', 'RUN a   b'] });
  });
});
