/**
 * The one transport of the app: gRPC-Web through the gateway (NGINX /api -> Envoy), with
 * the auth interceptor. Pages never build transports or fetch calls: they call
 * `useClient(Service)` (use-client.ts) with a service descriptor from gen/ts.
 */
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AuthService } from "@gen/shop/auth/v1/auth_pb.js";
import type { AuthSession } from "./session";

/** Same origin: NGINX serves the app and proxies /api/<package>.<Service>/<Method>. */
export const API_BASE_URL = "/api";

/**
 * Adds `authorization: Bearer <access token>` and, when a call comes back UNAUTHENTICATED,
 * refreshes once through AuthService.RefreshToken and retries the call once. AuthService
 * calls pass through untouched (they carry their own credentials, and refreshing a
 * refresh must not recurse).
 */
export function authInterceptor(session: AuthSession): Interceptor {
  return (next) => async (req) => {
    if (req.service.typeName === AuthService.typeName) return next(req);
    const token = await session.accessTokenForCall();
    if (token) req.header.set("authorization", `Bearer ${token}`);
    try {
      return await next(req);
    } catch (err) {
      const canRetry = !req.stream && ConnectError.from(err).code === Code.Unauthenticated && session.currentRefreshToken !== "";
      if (!canRetry) throw err;
      const fresh = await session.refresh();
      if (!fresh) throw err;
      req.header.set("authorization", `Bearer ${fresh}`);
      return next(req);
    }
  };
}

export const LSN_HEADER = "x-shop-lsn";

/**
 * The newest PostgreSQL commit position ('X/Y', hex halves) this app has seen. LSNs are
 * cluster-wide (product, user and the rest share one primary), so one maximum serves every
 * service.
 */
export class LsnTracker {
  private value = 0n;
  text = "";

  see(lsn: string | null | undefined): void {
    const m = lsn?.trim().match(/^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/);
    if (!m) return;
    const v = (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
    if (v > this.value) {
      this.value = v;
      this.text = lsn!.trim();
    }
  }
}

/**
 * Read-your-writes: services answer a write with its commit's LSN in the `x-shop-lsn`
 * trailer, and a call that sends one reads from the replica only once it has replayed that
 * far (else from the primary). Echoing the newest seen means a shopper never reads a page
 * older than their own change, e.g. the product list right after an admin edit.
 */
export function lsnInterceptor(tracker: LsnTracker): Interceptor {
  return (next) => async (req) => {
    if (tracker.text) req.header.set(LSN_HEADER, tracker.text);
    const res = await next(req);
    tracker.see(res.header.get(LSN_HEADER));
    if (!res.stream) tracker.see(res.trailer.get(LSN_HEADER));
    return res;
  };
}

export const TRACEPARENT_HEADER = "traceparent";

function randomHex(bytes: number): string {
  const buf = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(buf, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A new W3C trace context ('00-<trace id>-<span id>-01', sampled) for one browser call. */
export function newTraceparent(): string {
  let traceId = randomHex(16);
  while (/^0+$/.test(traceId)) traceId = randomHex(16); // all-zero ids are invalid
  return `00-${traceId}-${randomHex(8)}-01`;
}

/**
 * Each call starts its trace in the browser: the services continue the `traceparent` they
 * receive (Envoy passes it through), so one checkout is one trace from this request through
 * order, product, user, the outbox relay and the notification email. A hand-rolled header
 * rather than the OpenTelemetry web SDK: the app exports no browser spans, it only names
 * the trace, which is 10 lines instead of a ~60 kB dependency.
 */
export function traceInterceptor(): Interceptor {
  return (next) => async (req) => {
    if (!req.header.has(TRACEPARENT_HEADER)) req.header.set(TRACEPARENT_HEADER, newTraceparent());
    return next(req);
  };
}

export function createShopTransport(session: AuthSession, baseUrl = API_BASE_URL): Transport {
  const interceptors = [traceInterceptor(), lsnInterceptor(new LsnTracker()), authInterceptor(session)];
  const transport = createGrpcWebTransport({ baseUrl, interceptors });
  wireRefresh(session, transport);
  return transport;
}

/** Lets the session refresh through AuthService.RefreshToken on `transport`. */
export function wireRefresh(session: AuthSession, transport: Transport): void {
  const auth = createClient(AuthService, transport);
  session.setRefresher(async (refreshToken) => (await auth.refreshToken({ refreshToken })).tokens);
}
