import { Link } from "react-router";

export function NotFoundPage() {
  return (
    <section aria-labelledby="nf-heading">
      <h1 id="nf-heading">Page not found</h1>
      <p>
        There's nothing at this address. <Link to="/">Go to the catalog</Link>.
      </p>
    </section>
  );
}
