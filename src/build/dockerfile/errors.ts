/**
 * The one error type of the Dockerfile front end. Messages follow Docker's
 * wording and are prefixed with the file and 1-based line, as `docker build`
 * prints them: `Dockerfile:3: unknown instruction: FOO`.
 */

import { StrataError } from '../../content/errors.js';

/** A Dockerfile that Docker would refuse, located at a line (code `DOCKERFILE_INVALID`). */
export class DockerfileError extends StrataError {
  /** 1-based line where the offending instruction starts. */
  readonly line: number;
  /** 1-based line where the offending instruction ends (same as `line` for one-liners). */
  readonly endLine: number;
  /** The message without the `file:line:` prefix. */
  readonly detail: string;
  /** The file name used in the prefix. */
  readonly filename: string;

  constructor(detail: string, line: number, opts: { endLine?: number; filename?: string } = {}) {
    const filename = opts.filename ?? 'Dockerfile';
    const at = Math.max(1, line);
    super('DOCKERFILE_INVALID', `${filename}:${at}: ${detail}`);
    this.name = 'DockerfileError';
    this.line = at;
    this.endLine = Math.max(at, opts.endLine ?? at);
    this.detail = detail;
    this.filename = filename;
  }
}

/** Where an instruction sits, for errors raised after parsing. */
export interface SourceLocation {
  line: number;
  endLine?: number;
}

/** Builds a {@link DockerfileError} at an instruction's location. */
export function errorAt(where: SourceLocation, detail: string, filename?: string): DockerfileError {
  const opts: { endLine?: number; filename?: string } = {};
  if (where.endLine !== undefined) opts.endLine = where.endLine;
  if (filename !== undefined) opts.filename = filename;
  return new DockerfileError(detail, where.line, opts);
}
