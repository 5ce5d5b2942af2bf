/**
 * Read-only Prometheus queries for the ops page, through the gateway's admin-only proxy
 * (NGINX /api/ops/prometheus/{query,query_range} -> Prometheus /api/v1/..., allowed by
 * Envoy's JWT + admin-role check; see mesh/templates/nginx.conf.j2). The access token goes
 * in the Authorization header like every other call.
 */
import { Code, ConnectError } from "@connectrpc/connect";

export const OPS_PREFIX = "/api/ops/prometheus";

/** One labelled series: [unix seconds, value] points. */
export interface Series {
  labels: Record<string, string>;
  points: [number, number][];
}

export class OpsHttpError extends Error {
  constructor(readonly status: number) {
    super(
      status === 401
        ? "Log in as an admin to see live metrics."
        : status === 403
          ? "Only admins can see live metrics."
          : `Prometheus answered HTTP ${status}.`,
    );
  }

  /** The Connect code the rest of the app words errors by (src/api/errors.ts). */
  get code(): Code {
    if (this.status === 401) return Code.Unauthenticated;
    if (this.status === 403) return Code.PermissionDenied;
    if (this.status === 429) return Code.ResourceExhausted;
    if (this.status === 502 || this.status === 503 || this.status === 504) return Code.Unavailable;
    return Code.Internal;
  }

  toConnectError(): ConnectError {
    return new ConnectError(this.message, this.code);
  }
}

/** Signature of queryRange, so the ops page can be handed a fake Prometheus in tests. */
export type QueryRange = (query: string, token: string, signal: AbortSignal) => Promise<Series[]>;

interface MatrixAnswer {
  status: string;
  error?: string;
  data?: { resultType: string; result: { metric: Record<string, string>; values?: [number, string][]; value?: [number, string] }[] };
}

/** Parses Prometheus' matrix or vector answer; NaN/Inf points (empty rates) are dropped. */
export function parseSeries(answer: MatrixAnswer): Series[] {
  if (answer.status !== "success" || !answer.data) throw new Error(answer.error || "query failed");
  return answer.data.result.map((r) => ({
    labels: r.metric,
    points: (r.values ?? (r.value ? [r.value] : []))
      .map(([t, v]): [number, number] => [Number(t), Number(v)])
      .filter(([, v]) => Number.isFinite(v)),
  }));
}

export async function queryRange(
  query: string,
  token: string,
  signal: AbortSignal,
  { minutes = 15, stepS = 15, now = Date.now() }: { minutes?: number; stepS?: number; now?: number } = {},
): Promise<Series[]> {
  const end = Math.floor(now / 1000);
  const params = new URLSearchParams({ query, start: String(end - minutes * 60), end: String(end), step: String(stepS) });
  const res = await fetch(`${OPS_PREFIX}/query_range?${params}`, {
    headers: token ? { Authorization: `Bearer ${token}` } : {},
    signal,
  });
  if (!res.ok) throw new OpsHttpError(res.status);
  return parseSeries((await res.json()) as MatrixAnswer);
}

/** The last point of a series, or undefined. */
export function latest(s: Series): number | undefined {
  return s.points.length ? s.points[s.points.length - 1][1] : undefined;
}
