import { act, screen, within } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import { rolesFromJwt } from "../api/session";
import { OpsHttpError, type QueryRange, type Series } from "../ops/prometheus";
import { setup } from "../test-utils";
import { OPS_QUERIES, OpsPage } from "./OpsPage";

const t0 = 1_760_000_000;
/** A 15-minute series at 15 s steps, ending at `last`. */
const series = (labels: Record<string, string>, last: number, first = 0): Series => ({
  labels,
  points: Array.from({ length: 61 }, (_, i): [number, number] => [t0 + i * 15, i === 60 ? last : first + ((last - first) * i) / 60]),
});

/** Prometheus as the ops page sees it: one answer per query of OPS_QUERIES. */
const ANSWERS: Record<string, Series[]> = {
  [OPS_QUERIES.rate]: [series({ service: "order" }, 1.5, 0.5), series({ service: "product" }, 12.25, 3)],
  [OPS_QUERIES.errors]: [series({ service: "order" }, 0.02)],
  [OPS_QUERIES.p99]: [series({ service: "order" }, 0.045), series({ service: "product" }, 0.0081)],
  [OPS_QUERIES.lag]: [series({ group: "notification", topic: "shop.orders.v1" }, 12, 40)],
  [OPS_QUERIES.dlq]: [series({ topic: "shop.orders.v1.dlq" }, 3, 3)],
  [OPS_QUERIES.replicaLag]: [series({ service: "product" }, 2048, 0)],
  [OPS_QUERIES.outbox]: [series({ service: "order" }, 4, 0)],
};

function region(name: string): HTMLElement {
  return screen.getByRole("region", { name });
}

describe("ops page", () => {
  it("shows RED per service, consumer lag, DLQ size and replica lag, each with a chart", async () => {
    const asked: string[] = [];
    const tokens: string[] = [];
    const fake: QueryRange = async (query, token) => {
      asked.push(query);
      tokens.push(token);
      const answer = ANSWERS[query];
      if (!answer) throw new Error(`unexpected query ${query}`);
      return answer;
    };
    setup(() => undefined, { path: "/ops", signedIn: true, roles: ["admin"], ui: <OpsPage query={fake} /> });

    const red = await screen.findByRole("region", { name: "Requests per service" });
    const order = within(red).getByRole("rowheader", { name: "order" }).closest("tr") as HTMLElement;
    expect(within(order).getByText("1.50/s")).toBeInTheDocument();
    expect(within(order).getByText("2.00 %")).toBeInTheDocument();
    expect(within(order).getByText("45.0 ms")).toBeInTheDocument();
    const product = within(red).getByRole("rowheader", { name: "product" }).closest("tr") as HTMLElement;
    expect(within(product).getByText("12.25/s")).toBeInTheDocument();
    expect(within(product).getByText("8.1 ms")).toBeInTheDocument();
    // No error series for product: a dash, not 0 % (no data is not "no errors").
    expect(within(product).getByText("–")).toBeInTheDocument();

    const lag = region("Kafka consumer lag");
    expect(within(lag).getByRole("rowheader", { name: "notification · shop.orders.v1" }).closest("tr")).toHaveTextContent("12");
    expect(within(region("Dead-letter queues")).getByRole("rowheader", { name: "shop.orders.v1.dlq" }).closest("tr")).toHaveTextContent("3");
    expect(within(region("Replica lag")).getByRole("rowheader", { name: "product" }).closest("tr")).toHaveTextContent("2.0 KiB");
    expect(within(region("Order outbox")).getByRole("rowheader", { name: "order" }).closest("tr")).toHaveTextContent("4");

    // One drawn line per row: a real path across the chart, not the dashed "no data" line.
    for (const name of [
      "order requests per second",
      "product requests per second",
      "Kafka consumer lag notification · shop.orders.v1",
      "Dead-letter queues shop.orders.v1.dlq",
      "Replica lag product",
    ]) {
      const chart = screen.getByRole("img", { name });
      expect(chart.querySelector("path")?.getAttribute("d")).toMatch(/^M0\.0,[\d.]+( L[\d.]+,[\d.]+){60}$/);
    }
    expect(new Set(asked)).toEqual(new Set(Object.values(OPS_QUERIES)));
    expect(tokens.every((t) => rolesFromJwt(t).includes("admin"))).toBe(true);
    expect(screen.queryByRole("alert")).not.toBeInTheDocument();
  });

  it("says in plain words that only admins can see it when the gateway answers 403", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval"] });
    try {
      let calls = 0;
      const fake: QueryRange = async () => {
        calls += 1;
        throw new OpsHttpError(403);
      };
      setup(() => undefined, { path: "/ops", signedIn: true, ui: <OpsPage query={fake} /> });
      await act(() => vi.advanceTimersByTimeAsync(0));
      const alert = screen.getByRole("alert");
      expect(alert).toHaveTextContent("Only admins can see this");
      expect(alert).toHaveTextContent("Live metrics are only for admins");
      expect(alert).not.toHaveTextContent(/403|Something went wrong|Prometheus/);
      expect(screen.queryByRole("button", { name: "Try again" })).not.toBeInTheDocument();
      expect(screen.queryByRole("region", { name: "Requests per service" })).not.toBeInTheDocument();
      // One round of queries only: a refusal is not asked again every 10 s.
      expect(calls).toBe(Object.keys(OPS_QUERIES).length);
      await act(() => vi.advanceTimersByTimeAsync(60_000));
      expect(calls).toBe(Object.keys(OPS_QUERIES).length);
    } finally {
      vi.useRealTimers();
    }
  });

  it("words Prometheus being down (502 from the gateway) as unreachable, with a retry", async () => {
    const fake: QueryRange = async () => {
      throw new OpsHttpError(502);
    };
    setup(() => undefined, { path: "/ops", signedIn: true, roles: ["admin"], ui: <OpsPage query={fake} /> });
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("We couldn't reach the shop just now");
    expect(within(alert).getByRole("button", { name: "Try again" })).toBeInTheDocument();
  });

  it("asks a signed-out visitor to log in without asking Prometheus", () => {
    let calls = 0;
    const fake: QueryRange = async () => {
      calls += 1;
      return [];
    };
    setup(() => undefined, { path: "/ops", ui: <OpsPage query={fake} /> });
    expect(screen.getByText("Please log in to see live metrics.")).toBeInTheDocument();
    expect(calls).toBe(0);
  });
});
