/**
 * Exactly-once order placement from the browser.
 *
 * One checkout attempt = one idempotency key, created when the attempt starts and reused
 * for every submit of the same request: a double click, or a retry after the network
 * dropped the answer, reaches PlaceOrder with the same key, and the order service returns
 * the order it already placed instead of placing a second one. A submit while one is in
 * flight gets the same promise (no second request at all). The key changes only when the
 * request changes (cart or address) or after a definitive refusal (the server placed
 * nothing, so a fixed-up request must not be answered with the old outcome).
 */
import { Code, ConnectError } from "@connectrpc/connect";

export function newIdempotencyKey(): string {
  // PlaceOrderRequest.idempotency_key: 8-128 chars of [A-Za-z0-9_.:-].
  return `checkout-${crypto.randomUUID()}`;
}

/** Errors after which the same request may be retried with the same key. */
const RETRYABLE = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Unknown, Code.Internal, Code.Canceled, Code.Aborted, Code.ResourceExhausted]);

export class CheckoutGuard<T> {
  private fingerprint: string | null = null;
  private key = "";
  private inflight: Promise<T> | null = null;
  private placed: { fingerprint: string; result: T } | null = null;

  constructor(private readonly makeKey: () => string = newIdempotencyKey) {}

  get pending(): boolean {
    return this.inflight !== null;
  }

  /** The key the next (or current) submit of `fingerprint` uses. */
  keyFor(fingerprint: string): string {
    if (fingerprint !== this.fingerprint) {
      this.fingerprint = fingerprint;
      this.key = this.makeKey();
    }
    return this.key;
  }

  /**
   * Places the order described by `fingerprint` through `place(key)`, at most once at a
   * time; a repeat after success returns the same result without calling `place`.
   */
  submit(fingerprint: string, place: (idempotencyKey: string) => Promise<T>): Promise<T> {
    if (this.inflight) return this.inflight;
    if (this.placed?.fingerprint === fingerprint) return Promise.resolve(this.placed.result);
    const key = this.keyFor(fingerprint);
    const run = (async () => {
      try {
        const result = await place(key);
        this.placed = { fingerprint, result };
        return result;
      } catch (err) {
        if (!RETRYABLE.has(ConnectError.from(err).code)) this.fingerprint = null; // new key next time
        throw err;
      } finally {
        this.inflight = null;
      }
    })();
    this.inflight = run;
    return run;
  }
}
