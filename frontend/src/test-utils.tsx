/**
 * Renders the app (or a page) with real providers over an in-memory Connect router: the
 * generated service descriptors, the real auth interceptor and real serialization, with
 * the handlers the test supplies standing in for the servers.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type ConnectRouter, createRouterTransport } from "@connectrpc/connect";
import { TokenPairSchema } from "@gen/shop/auth/v1/auth_pb.js";
import { render } from "@testing-library/react";
import type { ReactElement } from "react";
import { MemoryRouter } from "react-router";
import { App } from "./App";
import { AuthSession } from "./api/session";
import { authInterceptor, wireRefresh } from "./api/transport";
import { ApiProvider } from "./api/use-client";
import { CartProvider } from "./cart/CartContext";
import { CartStore } from "./cart/cart";

export function fakeJwt(claims: Record<string, unknown>): string {
  const b64 = (o: unknown) => btoa(JSON.stringify(o)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
  return `${b64({ alg: "EdDSA", typ: "JWT" })}.${b64(claims)}.sig`;
}

export function tokenPair(access: string, refresh: string, userId = "u-1", ttlMs = 600_000) {
  return create(TokenPairSchema, {
    accessToken: access,
    refreshToken: refresh,
    userId,
    accessTokenExpireTime: timestampFromMs(Date.now() + ttlMs),
  });
}

/** `ui` renders one page (with its own props) instead of the whole app. */
export function setup(
  routes: (router: ConnectRouter) => void,
  options: { path?: string; signedIn?: boolean; roles?: string[]; ui?: ReactElement } = {},
) {
  const session = new AuthSession(sessionStorage);
  const transport = createRouterTransport(routes, { transport: { interceptors: [authInterceptor(session)] } });
  wireRefresh(session, transport);
  if (options.signedIn) {
    const claims = options.roles ? { sub: "u-1", roles: options.roles } : { sub: "u-1" };
    session.setTokens(tokenPair(fakeJwt(claims), "refresh-token-0000000001"), "ann@example.com");
  }
  const cart = new CartStore(localStorage);
  const utils = render(
    <ApiProvider transport={transport} session={session}>
      <CartProvider store={cart}>
        <MemoryRouter initialEntries={[options.path ?? "/"]}>
          {options.ui ?? <App />}
        </MemoryRouter>
      </CartProvider>
    </ApiProvider>,
  );
  return { ...utils, session, cart, transport };
}
