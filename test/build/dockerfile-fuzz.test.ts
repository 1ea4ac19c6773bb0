import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DockerfileError, ShellExpansionError, expandWord, expandWords, parseDockerfile } from '../../src/build/dockerfile/index.js';

/** Text built from the characters that matter to Dockerfile syntax. */
const dockerfileText = fc
  .array(
    fc.constantFrom('FROM x', 'RUN ', 'COPY ', 'ENV ', 'ARG ', 'ONBUILD ', 'HEALTHCHECK ', '<<EOF', 'EOF', '\\', '`', '#', '# escape=`', '"', "'", '$', '${', '}', '[', ']', ',', '=', '--', ' ', '\t', '\n', '\r\n', 'a', '-', ':'),
    { maxLength: 40 },
  )
  .map((parts) => parts.join(''));

describe('robustness', () => {
  it('the parser either returns an AST or throws a DockerfileError', () => {
    fc.assert(
      fc.property(dockerfileText, (text) => {
        try {
          parseDockerfile(text);
        } catch (err) {
          expect(err).toBeInstanceOf(DockerfileError);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('the lexer either returns or throws a ShellExpansionError', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 30, unit: fc.constantFrom('$', '{', '}', ':', '-', '+', '?', '#', '%', '/', '"', "'", '\\', 'A', ' ', '*') }), (word) => {
        try {
          expandWord(word, { A: 'a b' });
          expandWords(word, { A: 'a b' });
        } catch (err) {
          expect(err).toBeInstanceOf(ShellExpansionError);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('single quotes protect any text without a single quote', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }).filter((s) => !s.includes("'")), (s) => {
        expect(expandWord(`'${s}'`, { A: 'x' })).toBe(s);
      }),
      { numRuns: 300 },
    );
  });
});
