import type { ReactNode } from "react";
import { Link, useLocation } from "react-router";
import { useSession } from "../api/use-client";

/** Shows children to a signed-in shopper, otherwise a way to log in and come back. */
export function RequireLogin({ children, what }: { children: ReactNode; what: string }) {
  const { info } = useSession();
  const location = useLocation();
  if (info) return <>{children}</>;
  const next = encodeURIComponent(location.pathname + location.search);
  return (
    <div className="state state-empty">
      <p className="state-title">Please log in to {what}.</p>
      <p>
        <Link className="button" to={`/login?next=${next}`}>
          Log in
        </Link>{" "}
        or <Link to={`/signup?next=${next}`}>create an account</Link>
      </p>
    </div>
  );
}
