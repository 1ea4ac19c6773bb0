/**
 * Progress bars for long CLI operations (export, import, build), drawn on
 * stderr so stdout stays clean for data. Like docker's progress output they
 * appear only on an interactive terminal: piped, redirected, under CI or with
 * `--quiet`, a progress handle accepts updates and prints nothing.
 */
import cliProgress from 'cli-progress';
import { humanSize } from './output.js';

/** Handle returned by {@link createProgress}; every method is safe to call after `stop()`. */
export interface Progress {
  /** Sets the absolute amount done. */
  update(done: number): void;
  /** Adds `delta` (default 1) to the amount done. */
  increment(delta?: number): void;
  /** Sets or changes the total once it becomes known. */
  setTotal(total: number): void;
  /** Finishes the bar and moves the terminal to a new line. Idempotent. */
  stop(): void;
  /** True when a bar is actually being drawn. */
  readonly visible: boolean;
}

/** Options for {@link createProgress}. */
export interface ProgressOptions {
  /** Suppress the bar (the command's `--quiet`). */
  quiet?: boolean;
  /** Stream to draw on (default: `process.stderr`); bars appear only if it is a TTY. */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** How amounts are shown: human byte sizes (default) or plain counts. */
  unit?: 'bytes' | 'count';
}

const BAR_WIDTH = 40;
const activeProgress = new Set<Progress>();

function renderBar(fraction: number): string {
  // docker's pull/push bar: '=' for done, '>' at the head, spaces for the rest.
  const filled = Math.max(0, Math.min(BAR_WIDTH, Math.floor(fraction * BAR_WIDTH)));
  if (filled >= BAR_WIDTH) return '='.repeat(BAR_WIDTH);
  return `${'='.repeat(filled)}>${' '.repeat(BAR_WIDTH - filled - 1)}`;
}

/**
 * Starts a progress display for one operation.
 *
 * @param label - what is in progress, e.g. `"Exporting sha256:ab12..."`
 * @param total - the amount expected, if known; without it only the amount done is shown
 * @param options - see {@link ProgressOptions}
 */
export function createProgress(label: string, total?: number, options: ProgressOptions = {}): Progress {
  const stream = options.stream ?? process.stderr;
  const show = !options.quiet && stream.isTTY === true;
  const format = options.unit === 'count' ? (n: number) => String(n) : (n: number) => humanSize(n);
  let knownTotal = total !== undefined && total > 0 ? total : undefined;
  let done = 0;

  if (!show) {
    return {
      update(n) { done = n; },
      increment(delta = 1) { done += delta; },
      setTotal(n) { knownTotal = n; },
      stop() {},
      visible: false,
    };
  }

  const bar = new cliProgress.SingleBar({
    stream,
    hideCursor: true,
    clearOnComplete: false,
    // SIGINT handling belongs to the CLI; the bar must not swallow it.
    gracefulExit: false,
    linewrap: true,
    format: (_options, params) => {
      const amount = params.total > 0 && knownTotal !== undefined
        ? `${format(params.value)}/${format(params.total)}`
        : format(params.value);
      return knownTotal !== undefined
        ? `${label} [${renderBar(params.progress)}] ${amount}`
        : `${label} ${amount}`;
    },
  });
  // cli-progress needs some total; with none known it is only used for the (hidden) bar.
  bar.start(knownTotal ?? 0, 0);
  let stopped = false;

  const progress: Progress = {
    update(n) {
      done = n;
      if (!stopped) bar.update(done);
    },
    increment(delta = 1) {
      done += delta;
      if (!stopped) bar.update(done);
    },
    setTotal(n) {
      knownTotal = n > 0 ? n : undefined;
      if (!stopped) bar.setTotal(n);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      activeProgress.delete(progress);
      bar.stop();
    },
    get visible() {
      return !stopped;
    },
  };
  activeProgress.add(progress);
  return progress;
}

/**
 * Stops every bar still drawing, so an error message printed next starts on a
 * clean line. The CLI calls this before reporting a failure.
 */
export function stopAllProgress(): void {
  for (const progress of [...activeProgress]) progress.stop();
}
