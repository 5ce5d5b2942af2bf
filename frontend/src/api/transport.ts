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

export function createShopTransport(session: AuthSession, baseUrl = API_BASE_URL): Transport {
  const interceptors = [lsnInterceptor(new LsnTracker()), authInterceptor(session)];
  const transport = createGrpcWebTransport({ baseUrl, interceptors });
  wireRefresh(session, transport);
  return transport;
}

/** Lets the session refresh through AuthService.RefreshToken on `transport`. */
export function wireRefresh(session: AuthSession, transport: Transport): void {
  const auth = createClient(AuthService, transport);
  session.setRefresher(async (refreshToken) => (await auth.refreshToken({ refreshToken })).tokens);
}
