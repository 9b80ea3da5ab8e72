// A request body that can be sent more than once: to a retry, and whole to
// mirrors. The client's body is read once, at the pace of the try that is
// sending it (backpressure is unchanged); each chunk is also kept, up to a
// limit (limits.ts maxReplayBodyBytes). A new try gets a stream that
// starts with what was kept and goes on with the rest as it arrives. Once
// the body outgrows the limit nothing more is kept and what was kept is
// let go: no further try can be given the body (it is not replayable),
// and mirrors waiting for it are told it will not come.

import { Readable } from 'node:stream';

/** Called once: the whole body, or null when it was too long or did not arrive whole. */
export type WholeBodyCallback = (chunks: readonly Buffer[] | null) => void;

export class ReplayableBody {
  readonly #source: Readable;
  readonly #limit: number;
  /** What was read, while within the limit; null once it was not. */
  #kept: Buffer[] | null = [];
  #bytes = 0;
  #ended = false;
  /** The source closed before its end (client went away, body discarded). */
  #broken = false;
  #listening = false;
  /** The stream of the current try; earlier ones get nothing more. */
  #view: BodyView | null = null;
  #waiters: WholeBodyCallback[] | null = null;

  constructor(source: Readable, limit: number) {
    this.#source = source;
    this.#limit = limit;
    // Only 'data' makes the source flow: these wait for it to be read.
    source.once('end', this.#onEnd);
    source.once('close', this.#onClose);
    if (source.destroyed && !source.readableEnded) this.#broken = true;
  }

  /** Whether a new try can be given the whole body. */
  get replayable(): boolean {
    return this.#kept !== null && !this.#broken;
  }

  /** Bytes of the body read from the client so far. */
  get bytesRead(): number {
    return this.#bytes;
  }

  /**
   * The body for a new try, from its first byte. The stream of the try
   * before is retired: it is destroyed, and it gets nothing more. Call
   * only while replayable.
   */
  attempt(): Readable {
    const previous = this.#view;
    if (previous !== null) {
      previous.retired = true;
      previous.destroy();
      // Until the new try reads, the client waits.
      this.#source.pause();
    }
    const view = new BodyView(this);
    this.#view = view;
    return view;
  }

  /** `callback` gets the whole body once it has arrived (at once if it has), or null if it will not. */
  whenWhole(callback: WholeBodyCallback): void {
    if (this.#ended || this.#kept === null || this.#broken) {
      callback(this.#ended && this.#kept !== null ? this.#kept : null);
      return;
    }
    (this.#waiters ??= []).push(callback);
  }

  /** A try's stream wants data (BodyView._read). */
  pull(view: BodyView): void {
    if (view !== this.#view) return;
    if (!view.primed) {
      view.primed = true;
      // A later try starts with what earlier ones already read.
      for (const chunk of this.#kept ?? []) view.push(chunk);
      if (this.#ended) {
        view.push(null);
        return;
      }
      if (this.#broken) {
        view.destroy();
        return;
      }
    }
    if (!this.#listening) {
      this.#listening = true;
      this.#source.on('data', this.#onData);
    }
    this.#source.resume();
  }

  readonly #onData = (chunk: Buffer): void => {
    this.#bytes += chunk.length;
    if (this.#kept !== null) {
      if (this.#bytes > this.#limit) {
        this.#kept = null;
        this.#tell(null);
      } else {
        this.#kept.push(chunk);
      }
    }
    const view = this.#view;
    if (view === null || view.retired || !view.primed) {
      // Between tries: the client waits. The chunk is kept for the next
      // try; if it was one too many, the next try cannot have the whole
      // body, and fails rather than send a hole.
      if (view !== null && !view.retired && this.#kept === null) view.destroy();
      this.#source.pause();
      return;
    }
    if (!view.push(chunk)) this.#source.pause();
  };

  readonly #onEnd = (): void => {
    this.#ended = true;
    const view = this.#view;
    if (view !== null && !view.retired && view.primed) view.push(null);
    if (this.#kept !== null) this.#tell(this.#kept);
  };

  readonly #onClose = (): void => {
    if (this.#ended) return;
    this.#broken = true;
    const view = this.#view;
    if (view !== null && !view.retired) view.destroy();
    this.#tell(null);
  };

  #tell(chunks: readonly Buffer[] | null): void {
    const waiters = this.#waiters;
    if (waiters === null) return;
    this.#waiters = null;
    for (const w of waiters) w(chunks);
  }
}

/** One try's view of the body. */
class BodyView extends Readable {
  readonly #owner: ReplayableBody;
  /** Has been given what was kept before it. */
  primed = false;
  /** A later try took over. */
  retired = false;

  constructor(owner: ReplayableBody) {
    super();
    this.#owner = owner;
  }

  override _read(): void {
    if (!this.retired) this.#owner.pull(this);
  }
}
