/** Placeholder route: the observability issue fills it with live Prometheus figures. */
export function OpsPage() {
  return (
    <section aria-labelledby="ops-heading">
      <h1 id="ops-heading">Operations</h1>
      <p>
        Live service metrics (request rates, errors, latency, Kafka lag, outbox backlog, replica lag) will appear here. Until then,
        see Prometheus on port 9090.
      </p>
    </section>
  );
}
