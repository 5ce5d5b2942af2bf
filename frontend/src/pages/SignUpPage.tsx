import { AuthService } from "@gen/shop/auth/v1/auth_pb.js";
import { UserService } from "@gen/shop/user/v1/user_pb.js";
import { type FormEvent, useState } from "react";
import { Link, useNavigate, useSearchParams } from "react-router";
import { describeError } from "../api/errors";
import { useClient, useSession } from "../api/use-client";
import { ErrorNotice } from "../components/Status";
import { safeNext } from "./LoginPage";

export function SignUpPage() {
  const users = useClient(UserService);
  const auth = useClient(AuthService);
  const { session } = useSession();
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const [form, setForm] = useState({ displayName: "", email: "", password: "" });
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const next = safeNext(params.get("next"));
  const badField = error ? describeError(error).field : undefined;

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setPending(true);
    setError(null);
    const email = form.email.trim();
    try {
      await users.registerUser({ email, password: form.password, displayName: form.displayName.trim() });
      // Signed up: log straight in so the shopper can go on where they were.
      const r = await auth.login({ email, password: form.password });
      if (r.tokens) session.setTokens(r.tokens, email);
      navigate(r.tokens ? next : "/login");
    } catch (err) {
      setError(err);
    } finally {
      setPending(false);
    }
  };

  const set = (k: keyof typeof form) => (e: React.ChangeEvent<HTMLInputElement>) => setForm({ ...form, [k]: e.target.value });

  return (
    <section className="narrow" aria-labelledby="signup-heading">
      <h1 id="signup-heading">Create an account</h1>
      <form onSubmit={submit} className="stack-form">
        <div className="field">
          <label htmlFor="su-name">Your name</label>
          <input id="su-name" autoComplete="name" required maxLength={100} value={form.displayName} onChange={set("displayName")} aria-invalid={badField === "display_name" || undefined} />
        </div>
        <div className="field">
          <label htmlFor="su-email">Email</label>
          <input id="su-email" type="email" autoComplete="email" required value={form.email} onChange={set("email")} aria-invalid={badField === "email" || undefined} />
        </div>
        <div className="field">
          <label htmlFor="su-password">Password</label>
          <input
            id="su-password"
            type="password"
            autoComplete="new-password"
            required
            minLength={8}
            maxLength={128}
            aria-describedby="su-password-hint"
            value={form.password}
            onChange={set("password")}
            aria-invalid={badField === "password" || undefined}
          />
          <p id="su-password-hint" className="hint">
            At least 8 characters.
          </p>
        </div>
        {error !== null && <ErrorNotice error={error} />}
        <button type="submit" className="button" disabled={pending}>
          {pending ? "Creating your account…" : "Sign up"}
        </button>
      </form>
      <p>
        Already have an account? <Link to={`/login?next=${encodeURIComponent(next)}`}>Log in</Link>
      </p>
    </section>
  );
}
