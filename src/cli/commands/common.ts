/**
 * What the image commands share: opening the store named by `--root`,
 * Docker's refusals to put binary data on a terminal, streaming to stdout,
 * and reporting several failures of one command the way docker does (each
 * on its own line, exit status 1).
 */
import type { Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Strata } from '../../strata.js';
import type { CliContext } from '../main.js';

/** Opens the store the command's `--root` (or the default root) names. */
export function openStrata(ctx: CliContext): Promise<Strata> {
  return Strata.open({ root: ctx.root() });
}

/** True when `stream` is an interactive terminal. */
export function isTerminal(stream: NodeJS.ReadableStream | NodeJS.WritableStream): boolean {
  return (stream as { isTTY?: boolean }).isTTY === true;
}

/**
 * Docker's guard before writing a tar to stdout: a terminal gets an error
 * naming the way out instead of a screenful of binary.
 */
export function refuseTerminalOutput(ctx: CliContext, what: string): void {
  if (isTerminal(ctx.stdout)) throw new Error(`cowardly refusing to ${what} to a terminal. Use the -o flag or redirect`);
}

/** Streams `source` to the command's stdout, which stays open for whatever the process writes next. */
export async function streamToStdout(ctx: CliContext, source: NodeJS.ReadableStream): Promise<void> {
  await pipeline(source, ctx.stdout, { end: false });
}

/**
 * Reports the messages of failures that did not stop a command (`rmi a b`,
 * `inspect a b`): every one but the last goes to stderr as its own
 * `strata: …` line, and the last is thrown so the CLI prints it the same
 * way and exits with status 1. Does nothing for an empty list.
 */
export function failWith(ctx: CliContext, messages: readonly string[]): void {
  if (messages.length === 0) return;
  for (const message of messages.slice(0, -1)) ctx.stderr.write(`strata: ${message.replace(/\s*\r?\n\s*/g, '; ')}\n`);
  throw new Error(messages.at(-1));
}

/** The message of anything thrown. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Commander option parser for a repeatable option (`-c A -c B`). */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/**
 * Passes `source` through, reporting the running byte count to `onBytes`
 * (for progress bars over streams that have no progress hook of their own).
 */
export function countBytes(source: NodeJS.ReadableStream, onBytes: (bytes: number) => void): NodeJS.ReadableStream {
  let bytes = 0;
  const counter = new PassThrough({
    highWaterMark: 1 << 20,
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      onBytes(bytes);
      callback(null, chunk);
    },
  });
  source.on('error', (err: Error) => counter.destroy(err));
  return source.pipe(counter);
}

/** stat for a path the user named, failing with docker's wording (`open X: no such file or directory`). */
export async function statInput(path: string): Promise<Stats> {
  try {
    return await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`open ${path}: no such file or directory`);
    if (code === 'EACCES') throw new Error(`open ${path}: permission denied`);
    throw err;
  }
}
