import type { Logger } from 'pino';

/**
 * A list of steps, each with its undo. When a step fails (or the signal aborts), the undos of every step
 * that completed run in reverse order, with their own deadline, before the error is rethrown: a failed
 * create leaves nothing behind.
 */
export class Steps {
  readonly #undos: Array<{ what: string; undo: () => Promise<unknown> }> = [];
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  /** Runs a step; registers its undo only once it has succeeded. */
  async run<T>(
    what: string,
    signal: AbortSignal,
    step: () => Promise<T>,
    undo?: (result: T) => Promise<unknown>,
  ): Promise<T> {
    signal.throwIfAborted();
    const result = await step();
    if (undo) this.#undos.push({ what, undo: () => undo(result) });
    return result;
  }

  /** Registers an undo for something already done (e.g. an object created by a step that then failed half-way). */
  onUndo(what: string, undo: () => Promise<unknown>): void {
    this.#undos.push({ what, undo });
  }

  /** Rolls back; never throws (failures are logged and returned). */
  async rollback(): Promise<string[]> {
    const failures: string[] = [];
    while (this.#undos.length > 0) {
      const { what, undo } = this.#undos.pop()!;
      try {
        await undo();
      } catch (err) {
        this.#log.error({ err, what }, 'rollback step failed');
        failures.push(`${what}: ${(err as Error).message}`);
      }
    }
    return failures;
  }

  /** Forgets the undos: the whole list succeeded. */
  commit(): void {
    this.#undos.length = 0;
  }
}
