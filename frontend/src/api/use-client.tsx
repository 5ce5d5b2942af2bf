/**
 * React access to the generated clients, as connectrpc/examples-es react/cra/src/use-client.ts:
 * one transport for the app (given by <ApiProvider>), one memoized client per service.
 * Tests hand <ApiProvider> an in-memory router transport instead of the network one.
 */
import { type Client, createClient, type Transport } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { createContext, type ReactNode, useContext, useMemo, useSyncExternalStore } from "react";
import type { AuthSession, SessionInfo } from "./session";

interface Api {
  transport: Transport;
  session: AuthSession;
}

const ApiContext = createContext<Api | null>(null);

export function ApiProvider({ transport, session, children }: Api & { children: ReactNode }) {
  const value = useMemo(() => ({ transport, session }), [transport, session]);
  return <ApiContext.Provider value={value}>{children}</ApiContext.Provider>;
}

function useApi(): Api {
  const api = useContext(ApiContext);
  if (!api) throw new Error("useClient/useSession must be used inside <ApiProvider>");
  return api;
}

export function useClient<T extends DescService>(service: T): Client<T> {
  const { transport } = useApi();
  return useMemo(() => createClient(service, transport), [service, transport]);
}

/** The session object (for login/logout) and its current snapshot (re-renders on change). */
export function useSession(): { session: AuthSession; info: SessionInfo | null } {
  const { session } = useApi();
  const info = useSyncExternalStore(session.subscribe, session.getSnapshot, session.getSnapshot);
  return { session, info };
}
