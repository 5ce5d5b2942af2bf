import { AuthService } from "@gen/shop/auth/v1/auth_pb.js";
import { type FormEvent, useState } from "react";
import { Code, ConnectError } from "@connectrpc/connect";
import { Link, useNavigate, useSearchParams } from "react-router";
import { useClient, useSession } from "../api/use-client";
import { ErrorNotice } from "../components/Status";

/** Only same-site paths are followed after login (no open redirect via ?next=). */
export function safeNext(next: string | null): string {
  return next && next.startsWith("/") && !next.startsWith("//") ? next : "/";
}

/** On this page UNAUTHENTICATED means "these credentials are wrong", not "log in". */
export function isBadCredentials(err: unknown): boolean {
  const code = ConnectError.from(err).code;
  return code === Code.Unauthenticated || code === Code.NotFound || code === Code.PermissionDenied;
}

export function LoginPage() {
  const auth = useClient(AuthService);
  const { session } = useSession();
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const next = safeNext(params.get("next"));

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setPending(true);
    setError(null);
    try {
      const r = await auth.login({ email: email.trim(), password });
      if (!r.tokens) throw new Error("no tokens in login response");
      session.setTokens(r.tokens, email.trim());
      navigate(next);
    } catch (err) {
      setError(err);
    } finally {
      setPending(false);
    }
  };

  return (
    <section className="narrow" aria-labelledby="login-heading">
      <h1 id="login-heading">Log in</h1>
      <form onSubmit={submit} className="stack-form">
        <div className="field">
          <label htmlFor="login-email">Email</label>
          <input id="login-email" type="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor="login-password">Password</label>
          <input
            id="login-password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </div>
        {error !== null && isBadCredentials(error) && (
          <div className="state state-error" role="alert">
            <p className="state-title">Wrong email or password</p>
            <p>Check both and try again.</p>
          </div>
        )}
        {error !== null && !isBadCredentials(error) && <ErrorNotice error={error} />}
        <button type="submit" className="button" disabled={pending}>
          {pending ? "Logging in…" : "Log in"}
        </button>
      </form>
      <p>
        New here? <Link to={`/signup?next=${encodeURIComponent(next)}`}>Create an account</Link>
      </p>
    </section>
  );
}
