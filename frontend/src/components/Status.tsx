/** Loading, empty and error states, shared so every page says them the same way. */
import type { ReactNode } from "react";
import { Link, useLocation } from "react-router";
import { describeError } from "../api/errors";

export function Loading({ label = "Loading…" }: { label?: string }) {
  return (
    <p className="state state-loading" role="status" aria-live="polite">
      <span className="spinner" aria-hidden="true" />
      {label}
    </p>
  );
}

export function Empty({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <div className="state state-empty">
      <p className="state-title">{title}</p>
      {children}
    </div>
  );
}

export function ErrorNotice({ error, onRetry }: { error: unknown; onRetry?: () => void }) {
  const location = useLocation();
  const e = describeError(error);
  const next = encodeURIComponent(location.pathname + location.search);
  return (
    <div className="state state-error" role="alert" data-code={e.code}>
      <p className="state-title">{e.title}</p>
      <p>{e.message}</p>
      {e.action === "login" && (
        <p>
          <Link className="button" to={`/login?next=${next}`}>
            Log in
          </Link>
        </p>
      )}
      {(e.action === "retry" || e.action === "wait") && onRetry && (
        <p>
          <button type="button" className="button secondary" onClick={onRetry}>
            Try again
          </button>
        </p>
      )}
    </div>
  );
}
