/**
 * Ops: live RED per service, Kafka consumer lag, DLQ size, replica lag and the order
 * outbox, polled every 10 s from Prometheus through the gateway's admin-only proxy
 * (src/ops/prometheus.ts). The same figures as the generated Grafana dashboards.
 */
import { useSession } from "../api/use-client";
import { useQuery } from "../api/use-query";
import { RequireLogin } from "../components/RequireLogin";
import { ErrorNotice, Loading } from "../components/Status";
import { latest, OpsHttpError, type QueryRange, queryRange, type Series } from "../ops/prometheus";
import queries from "../ops/queries.json";
import { Sparkline } from "../ops/Sparkline";

// The queries live in one JSON file so the stack tests run each one against the real
// Prometheus (tests/integration/observability/test_ops_gateway.py).
export const OPS_QUERIES = queries;

type Key = keyof typeof OPS_QUERIES;
type Figures = Record<Key, Series[]>;

const fmt = {
  rate: (v?: number) => (v === undefined ? "–" : `${v.toFixed(2)}/s`),
  ratio: (v?: number) => (v === undefined ? "–" : `${(v * 100).toFixed(2)} %`),
  ms: (v?: number) => (v === undefined ? "–" : `${(v * 1000).toFixed(1)} ms`),
  count: (v?: number) => (v === undefined ? "–" : String(Math.round(v))),
  bytes: (v?: number) => (v === undefined ? "–" : v < 1024 ? `${v} B` : `${(v / 1024).toFixed(1)} KiB`),
};

function byLabel(series: Series[], label: string): Map<string, Series> {
  return new Map(series.map((s) => [s.labels[label] ?? "", s]));
}

function Table({ title, rows, label, value, format, empty }: { title: string; rows: Series[]; label: (s: Series) => string; value: string; format: (v?: number) => string; empty: string }) {
  return (
    <section className="ops-block" aria-label={title}>
      <h2>{title}</h2>
      {rows.length === 0 ? (
        <p className="muted">{empty}</p>
      ) : (
        <table className="ops-table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">{value}</th>
              <th scope="col">Last 15 min</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((s) => (
              <tr key={label(s)}>
                <th scope="row">{label(s)}</th>
                <td>{format(latest(s))}</td>
                <td>
                  <Sparkline series={s} label={`${title} ${label(s)}`} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

const REFUSED = new Set([401, 403]);

/** A 403 from the gateway's admin check gets its own plain sentence, not "not allowed". */
function OpsError({ error, onRetry }: { error: unknown; onRetry: () => void }) {
  if (error instanceof OpsHttpError && error.status === 403) {
    return (
      <div className="state state-error" role="alert" data-code={error.code}>
        <p className="state-title">Only admins can see this</p>
        <p>Live metrics are only for admins, and your account is not an admin account. Log in with an admin account to see them.</p>
      </div>
    );
  }
  return <ErrorNotice error={error instanceof OpsHttpError ? error.toConnectError() : error} onRetry={onRetry} />;
}

function Dashboard({ query }: { query: QueryRange }) {
  const { session } = useSession();
  const q = useQuery<Figures>(
    async (signal) => {
      const token = await session.accessTokenForCall();
      const keys = Object.keys(OPS_QUERIES) as Key[];
      const results = await Promise.all(keys.map((k) => query(OPS_QUERIES[k], token, signal)));
      return Object.fromEntries(keys.map((k, i) => [k, results[i]])) as Figures;
    },
    [session, query],
    // A refusal will not change by asking every 10 s.
    { intervalMs: 10_000, pollWhile: (o) => !("error" in o && o.error instanceof OpsHttpError && REFUSED.has(o.error.status)) },
  );
  if (!q.data) return q.status === "error" ? <OpsError error={q.error} onRetry={q.reload} /> : <Loading label="Asking Prometheus…" />;
  const f = q.data;
  const errors = byLabel(f.errors, "service");
  const p99 = byLabel(f.p99, "service");
  return (
    <>
      {q.status === "error" && <OpsError error={q.error} onRetry={q.reload} />}
      <section className="ops-block" aria-label="Requests per service">
        <h2>Requests (RED) per service</h2>
        <table className="ops-table">
          <thead>
            <tr>
              <th scope="col">Service</th>
              <th scope="col">Rate</th>
              <th scope="col">Server errors</th>
              <th scope="col">p99</th>
              <th scope="col">Rate, last 15 min</th>
            </tr>
          </thead>
          <tbody>
            {f.rate.map((s) => {
              const svc = s.labels.service ?? "";
              return (
                <tr key={svc}>
                  <th scope="row">{svc}</th>
                  <td>{fmt.rate(latest(s))}</td>
                  <td>{fmt.ratio(latest(errors.get(svc) ?? { labels: {}, points: [] }))}</td>
                  <td>{fmt.ms(latest(p99.get(svc) ?? { labels: {}, points: [] }))}</td>
                  <td>
                    <Sparkline series={s} label={`${svc} requests per second`} />
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </section>
      <Table title="Kafka consumer lag" rows={f.lag} label={(s) => `${s.labels.group} · ${s.labels.topic}`} value="Records behind" format={fmt.count} empty="No consumer reports lag." />
      <Table title="Dead-letter queues" rows={f.dlq} label={(s) => s.labels.topic ?? ""} value="Records" format={fmt.count} empty="No DLQ size reported." />
      <Table title="Replica lag" rows={f.replicaLag} label={(s) => s.labels.service ?? ""} value="Behind primary" format={fmt.bytes} empty="No replica lag reported." />
      <Table title="Order outbox" rows={f.outbox} label={(s) => s.labels.service ?? ""} value="Pending events" format={fmt.count} empty="No outbox figures." />
    </>
  );
}

/** `query` is Prometheus' range query through the gateway; tests hand in a fake. */
export function OpsPage({ query = queryRange }: { query?: QueryRange }) {
  return (
    <section aria-labelledby="ops-heading">
      <h1 id="ops-heading">Operations</h1>
      <p className="muted">Live from Prometheus every 10 s (admins only). Dashboards with more detail are generated for Grafana.</p>
      <RequireLogin what="see live metrics">
        <Dashboard query={query} />
      </RequireLogin>
    </section>
  );
}
