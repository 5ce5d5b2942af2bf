/**
 * The signed-in session: who the shopper is and the tokens that prove it.
 *
 * Token handling (see frontend/README.md, "Tokens"):
 * - the access token lives in memory only (this object), never in any storage, so a
 *   reload or another tab cannot read it back and XSS cannot lift it from storage;
 * - the refresh token is kept in memory and in sessionStorage, so a reload in the same
 *   tab stays signed in, while closing the tab ends the session. It is the one secret an
 *   XSS could read; an HttpOnly cookie would hide it, but the auth API hands tokens out in
 *   the response body over gRPC-Web, so that needs the gateway to set the cookie first.
 *
 * Refreshing is single-flight: many calls failing with UNAUTHENTICATED at once share one
 * RefreshToken call, because refresh tokens rotate and a second use would be refused.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { TokenPair } from "@gen/shop/auth/v1/auth_pb.js";

const STORAGE_KEY = "shopmesh.session";
// Refresh a little before expiry so a call does not set off with a token about to lapse.
const EXPIRY_MARGIN_MS = 15_000;
// Answers to RefreshToken that mean "this refresh token is dead", as opposed to "try later".
const REFUSED = new Set([Code.Unauthenticated, Code.InvalidArgument, Code.NotFound, Code.PermissionDenied]);

export interface SessionInfo {
  userId: string;
  email: string;
  roles: string[];
}

interface Persisted {
  refreshToken: string;
  userId: string;
  email: string;
}

export type Refresher = (refreshToken: string) => Promise<TokenPair | undefined>;

function timestampMs(ts: TokenPair["accessTokenExpireTime"]): number {
  if (!ts) return 0;
  return Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6);
}

/** Reads the roles claim of a JWT for display only: the server decides what is allowed. */
export function rolesFromJwt(token: string): string[] {
  try {
    const payload = token.split(".")[1];
    if (!payload) return [];
    const json = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/")));
    const raw = json.roles ?? json.role ?? json.scope ?? [];
    const list: unknown[] = Array.isArray(raw) ? raw : String(raw).split(/[\s,]+/);
    return list.map((r) => String(r).toLowerCase().replace(/^role_/, "")).filter(Boolean);
  } catch {
    return [];
  }
}

export class AuthSession {
  private accessToken = "";
  private accessExpiresAt = 0;
  private refreshToken = "";
  private info: SessionInfo | null = null;
  private refreshing: Promise<string | undefined> | null = null;
  private listeners = new Set<() => void>();
  private refresher: Refresher | null = null;

  constructor(private readonly storage: Storage | undefined = globalThis.sessionStorage) {
    const saved = this.read();
    if (saved) {
      this.refreshToken = saved.refreshToken;
      // Known user, no access token yet: the first call (or restore()) refreshes.
      this.info = { userId: saved.userId, email: saved.email, roles: [] };
    }
  }

  /** Wires the RefreshToken call (set by the transport, which owns the client). */
  setRefresher(refresher: Refresher): void {
    this.refresher = refresher;
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  /** Stable snapshot for useSyncExternalStore. */
  getSnapshot = (): SessionInfo | null => this.info;

  get signedIn(): boolean {
    return this.info !== null;
  }

  get currentRefreshToken(): string {
    return this.refreshToken;
  }

  /** Stores a fresh token pair from Login or RefreshToken. */
  setTokens(tokens: TokenPair, email?: string): void {
    this.accessToken = tokens.accessToken;
    this.accessExpiresAt = timestampMs(tokens.accessTokenExpireTime);
    if (tokens.refreshToken) this.refreshToken = tokens.refreshToken;
    this.info = {
      userId: tokens.userId || this.info?.userId || "",
      email: email ?? this.info?.email ?? "",
      roles: rolesFromJwt(tokens.accessToken),
    };
    this.write();
    this.emit();
  }

  clear(): void {
    this.accessToken = "";
    this.accessExpiresAt = 0;
    this.refreshToken = "";
    this.info = null;
    try {
      this.storage?.removeItem(STORAGE_KEY);
    } catch {
      // storage disabled: nothing was saved either
    }
    this.emit();
  }

  /** An access token valid for a while, refreshing first if needed; "" when signed out. */
  async accessTokenForCall(): Promise<string> {
    const fresh = this.accessToken && (this.accessExpiresAt === 0 || this.accessExpiresAt - EXPIRY_MARGIN_MS > Date.now());
    if (fresh) return this.accessToken;
    if (!this.refreshToken) return "";
    return (await this.refresh()) ?? "";
  }

  /** Single-flight refresh; clears the session when the refresh token is refused. */
  refresh(): Promise<string | undefined> {
    if (!this.refreshing) {
      this.refreshing = this.doRefresh().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  private async doRefresh(): Promise<string | undefined> {
    const token = this.refreshToken;
    if (!token || !this.refresher) return undefined;
    try {
      const pair = await this.refresher(token);
      if (!pair?.accessToken) throw new Error("no token in refresh response");
      this.setTokens(pair);
      return pair.accessToken;
    } catch (err) {
      // Only a definitive refusal ends the session; a network blip keeps the refresh token.
      if (!(err instanceof ConnectError) || REFUSED.has(err.code)) this.clear();
      return undefined;
    }
  }

  private read(): Persisted | null {
    try {
      const raw = this.storage?.getItem(STORAGE_KEY);
      if (!raw) return null;
      const p = JSON.parse(raw) as Partial<Persisted>;
      if (typeof p.refreshToken !== "string" || !p.refreshToken || typeof p.userId !== "string") return null;
      return { refreshToken: p.refreshToken, userId: p.userId, email: typeof p.email === "string" ? p.email : "" };
    } catch {
      return null;
    }
  }

  private write(): void {
    if (!this.refreshToken || !this.info) return;
    const p: Persisted = { refreshToken: this.refreshToken, userId: this.info.userId, email: this.info.email };
    try {
      this.storage?.setItem(STORAGE_KEY, JSON.stringify(p));
    } catch {
      // private mode / quota: the session still works until the tab reloads
    }
  }

  private emit(): void {
    for (const l of this.listeners) l();
  }
}
