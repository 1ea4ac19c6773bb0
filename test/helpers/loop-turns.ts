/**
 * Counts turns of the event loop (one setImmediate callback per turn), for
 * tests that check that a long synchronous job yields now and then.
 */
export interface LoopTurns {
  /** Turns counted so far. */
  readonly count: number;
  /** Stops counting (the last callback then does nothing). */
  stop(): void;
}

export function countLoopTurns(): LoopTurns {
  let count = 0;
  let ticking = true;
  const tick = (): void => {
    count++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  return {
    get count() {
      return count;
    },
    stop() {
      ticking = false;
    },
  };
}
