/**
 * Loading / error / data for one call, re-run when `deps` change, aborted on unmount or
 * when superseded (so a slow answer never overwrites a newer one). `intervalMs` re-runs
 * it while the page is open and visible (live order status), for as long as `pollWhile`
 * says so about the last outcome. Stopping is decided inside the loop, not by changing
 * `intervalMs`: a changed option would restart the effect, which asks once more at once.
 */
import { type DependencyList, useCallback, useEffect, useRef, useState } from "react";

export type Outcome<T> = { data: T } | { error: unknown };

export type QueryState<T> =
  | { status: "loading"; data?: T; error?: undefined }
  | { status: "error"; data?: T; error: unknown }
  | { status: "success"; data: T; error?: undefined };

export function useQuery<T>(
  run: (signal: AbortSignal) => Promise<T>,
  deps: DependencyList,
  options: { intervalMs?: number; enabled?: boolean; pollWhile?: (outcome: Outcome<T>) => boolean } = {},
): QueryState<T> & { reload: () => void } {
  const { intervalMs, enabled = true } = options;
  const pollWhileRef = useRef(options.pollWhile);
  pollWhileRef.current = options.pollWhile;
  const [state, setState] = useState<QueryState<T>>({ status: "loading" });
  const [nonce, setNonce] = useState(0);
  const runRef = useRef(run);
  runRef.current = run;

  useEffect(() => {
    if (!enabled) return;
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let first = true;
    const tick = async () => {
      if (!first && typeof document !== "undefined" && document.hidden) {
        timer = setTimeout(tick, intervalMs);
        return;
      }
      if (first) setState((s) => ({ status: "loading", data: s.data }));
      first = false;
      let outcome: Outcome<T>;
      try {
        const data = await runRef.current(controller.signal);
        outcome = { data };
        if (!controller.signal.aborted) setState({ status: "success", data });
      } catch (error) {
        outcome = { error };
        // A failed poll keeps the last good data on screen next to the error.
        if (!controller.signal.aborted) setState((s) => ({ status: "error", data: s.data, error }));
      }
      const again = pollWhileRef.current?.(outcome) ?? true;
      if (intervalMs && again && !controller.signal.aborted) timer = setTimeout(tick, intervalMs);
    };
    void tick();
    return () => {
      controller.abort();
      clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, nonce, enabled, intervalMs]);

  const reload = useCallback(() => setNonce((n) => n + 1), []);
  return { ...state, reload };
}
