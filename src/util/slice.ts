/**
 * Pacing for long loops of synchronous work (tree walks, tar framing, context
 * listings): the work runs in slices of a few milliseconds, and the event loop
 * turns between them, so timers, I/O callbacks and whoever consumes the output
 * (a compressor feeding its threads, say) are not starved.
 */

/** A macrotask turn, so pending I/O callbacks run before the next slice. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolveTurn) => setImmediate(resolveTurn));
}

/** Tells a synchronous loop when its slice is used up. */
export class Slicer {
  private steps = 0;
  private deadline: number;

  /**
   * `sliceMs`: how long a slice lasts. `checkEvery`: steps between looks at
   * the clock, for loops whose steps cost less than reading it.
   */
  constructor(
    private readonly sliceMs: number,
    private readonly checkEvery = 1,
  ) {
    this.deadline = performance.now() + sliceMs;
  }

  /** Call once per step: true when the slice is used up (then await {@link pause}). */
  due(): boolean {
    return ++this.steps % this.checkEvery === 0 && performance.now() >= this.deadline;
  }

  /** Lets the event loop turn, then starts a new slice. */
  async pause(): Promise<void> {
    await yieldToEventLoop();
    this.restart();
  }

  /** Starts a new slice now (after work that was not part of the loop). */
  restart(): void {
    this.deadline = performance.now() + this.sliceMs;
  }
}
