/**
 * A minimal typed event emitter (no dependency, same in browsers and Node).
 * A listener that throws does not stop the others or the client: the
 * error is re-thrown from a fresh task, where the runtime reports it.
 *
 * @module
 */

/** Removes the listener it was returned for. */
export type Unsubscribe = () => void;

/** Listeners per event name of `Events` (a map from name to payload type). */
export class Emitter<Events extends object> {
  private readonly listeners = new Map<keyof Events, Set<(event: never) => void>>();

  /** Calls `listener` for every `type` event until unsubscribed. */
  on<K extends keyof Events>(type: K, listener: (event: Events[K]) => void): Unsubscribe {
    let set = this.listeners.get(type);
    if (!set) {
      set = new Set();
      this.listeners.set(type, set);
    }
    const l = listener as (event: never) => void;
    set.add(l);
    return () => set.delete(l);
  }

  /** The next `type` event that `accept` takes (any by default). */
  once<K extends keyof Events>(type: K, accept: (event: Events[K]) => boolean = () => true): Promise<Events[K]> {
    return new Promise((resolve) => {
      const off = this.on(type, (event) => {
        if (!accept(event)) return;
        off();
        resolve(event);
      });
    });
  }

  /** Calls the `type` listeners with `event`. */
  emit<K extends keyof Events>(type: K, event: Events[K]): void {
    const set = this.listeners.get(type);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        (listener as (event: Events[K]) => void)(event);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }
  }
}
