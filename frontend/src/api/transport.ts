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

export function createShopTransport(session: AuthSession, baseUrl = API_BASE_URL): Transport {
  const transport = createGrpcWebTransport({ baseUrl, interceptors: [authInterceptor(session)] });
  wireRefresh(session, transport);
  return transport;
}

/** Lets the session refresh through AuthService.RefreshToken on `transport`. */
export function wireRefresh(session: AuthSession, transport: Transport): void {
  const auth = createClient(AuthService, transport);
  session.setRefresher(async (refreshToken) => (await auth.refreshToken({ refreshToken })).tokens);
}
