/**
 * A child node process running an ES module body, with a line reader over
 * its stdout: what the crash and concurrency tests of several areas drive.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';

/** A child process with a line reader over its stdout. */
export interface Child {
  process: ChildProcess;
  nextLine(): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
  send(line: string): void;
}

/**
 * Runs `script` (an ES module body) under node with `args` as
 * process.argv.slice(1); `prefix` (e.g. setpriv) is run in front of node.
 */
export function startChild(script: string, args: string[] = [], prefix: string[] = []): Child {
  const command = prefix.length > 0 ? prefix[0]! : process.execPath;
  const commandArgs = [...prefix.slice(1), ...(prefix.length > 0 ? [process.execPath] : []), '--input-type=module', '-e', script, '--', ...args];
  const child = spawn(command, commandArgs, { stdio: ['pipe', 'pipe', 'pipe'], cwd: tmpdir() });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const lines: string[] = [];
  const waiters: { resolve: (line: string) => void; reject: (err: Error) => void }[] = [];
  let ended = false;
  createInterface({ input: child.stdout! })
    .on('line', (line) => {
      const waiter = waiters.shift();
      if (waiter) waiter.resolve(line);
      else lines.push(line);
    })
    .on('close', () => {
      ended = true;
      for (const waiter of waiters.splice(0)) waiter.reject(new Error(`child exited before printing a line; stderr: ${stderr}`));
    });
  child.stdin!.on('error', () => undefined);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolvePromise) =>
    child.on('exit', (code, signal) => resolvePromise({ code, signal })),
  );
  return {
    process: child,
    exited,
    stderr: () => stderr,
    send: (line) => child.stdin!.write(`${line}\n`),
    nextLine: () => {
      const line = lines.shift();
      if (line !== undefined) return Promise.resolve(line);
      if (ended) return Promise.reject(new Error(`child exited before printing a line; stderr: ${stderr}`));
      return new Promise((resolvePromise, reject) => waiters.push({ resolve: resolvePromise, reject }));
    },
  };
}
