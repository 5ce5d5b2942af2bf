import { create } from "@bufbuild/protobuf";
import { MoneySchema } from "@gen/shop/common/v1/common_pb.js";
import { OrderSchema, OrderService, OrderStatus } from "@gen/shop/order/v1/order_pb.js";
import { Code, ConnectError } from "@connectrpc/connect";
import { act, screen } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { setup } from "../test-utils";
import { POLL_MS } from "./OrderDetailPage";

const order = (status: OrderStatus) =>
  create(OrderSchema, {
    id: "o-1",
    userId: "u-1",
    status,
    lines: [{ productId: "p-mug", productName: "Blue mug", quantity: 2 }],
    total: create(MoneySchema, { currencyCode: "USD", units: 25n }),
  });

/** Lets the pending poll's timer fire and its answer (in-memory transport, promises) land. */
async function nextPoll() {
  await act(() => vi.advanceTimersByTimeAsync(POLL_MS));
}

describe("order detail", () => {
  // Only the timers are fake: promises and microtasks run as usual, so a call through the
  // in-memory transport resolves inside advanceTimersByTimeAsync.
  beforeEach(() => vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval"] }));
  afterEach(() => vi.useRealTimers());

  it("follows the status live without a reload and stops polling once the order is final", async () => {
    const answers = [OrderStatus.PENDING, OrderStatus.CONFIRMED, OrderStatus.SHIPPED, OrderStatus.DELIVERED];
    let calls = 0;
    setup(
      (router) =>
        router.service(OrderService, {
          async getOrder(req) {
            expect(req.id).toBe("o-1");
            const status = answers[Math.min(calls, answers.length - 1)];
            calls += 1;
            return { order: order(status) };
          },
        }),
      { path: "/orders/o-1", signedIn: true },
    );
    await act(() => vi.advanceTimersByTimeAsync(0));
    const heading = screen.getByRole("heading", { name: "Order o-1" });
    expect(screen.getByTestId("order-status")).toHaveTextContent("Pending");
    expect(screen.getByText("(updates automatically)")).toBeInTheDocument();
    expect(calls).toBe(1);

    // Nothing is asked again before the interval is up.
    await act(() => vi.advanceTimersByTimeAsync(POLL_MS - 100));
    expect(calls).toBe(1);
    await act(() => vi.advanceTimersByTimeAsync(100));
    expect(screen.getByTestId("order-status")).toHaveTextContent("Confirmed");

    await nextPoll();
    expect(screen.getByTestId("order-status")).toHaveTextContent("Shipped");
    expect(screen.getByText("(updates automatically)")).toBeInTheDocument();

    await nextPoll();
    expect(screen.getByTestId("order-status")).toHaveTextContent("Delivered");
    expect(screen.queryByText("(updates automatically)")).not.toBeInTheDocument();
    // The same page all along: updated in place, not reloaded or re-mounted.
    expect(screen.getByRole("heading", { name: "Order o-1" })).toBe(heading);
    expect(calls).toBe(4);

    // Delivered is final: a minute later nothing more has been asked.
    await act(() => vi.advanceTimersByTimeAsync(20 * POLL_MS));
    expect(calls).toBe(4);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("stops polling at a cancellation too", async () => {
    const answers = [OrderStatus.CONFIRMED, OrderStatus.CANCELLED];
    let calls = 0;
    setup(
      (router) =>
        router.service(OrderService, {
          async getOrder() {
            const o = order(answers[Math.min(calls, answers.length - 1)]);
            if (o.status === OrderStatus.CANCELLED) o.cancelReason = "payment declined";
            calls += 1;
            return { order: o };
          },
        }),
      { path: "/orders/o-1", signedIn: true },
    );
    await act(() => vi.advanceTimersByTimeAsync(0));
    expect(screen.getByTestId("order-status")).toHaveTextContent("Confirmed");
    expect(screen.getByRole("button", { name: "Cancel order" })).toBeInTheDocument();
    await nextPoll();
    expect(screen.getByTestId("order-status")).toHaveTextContent("Cancelled");
    expect(screen.getByText("Cancel reason: payment declined")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Cancel order" })).not.toBeInTheDocument();
    await act(() => vi.advanceTimersByTimeAsync(20 * POLL_MS));
    expect(calls).toBe(2);
  });

  it("stops asking when the order is refused (another shopper's order)", async () => {
    let calls = 0;
    setup(
      (router) =>
        router.service(OrderService, {
          async getOrder() {
            calls += 1;
            throw new ConnectError("order belongs to another user", Code.PermissionDenied);
          },
        }),
      { path: "/orders/o-1", signedIn: true },
    );
    await act(() => vi.advanceTimersByTimeAsync(0));
    expect(screen.getByRole("alert")).toHaveTextContent("Your account isn't allowed to see or change this.");
    expect(screen.queryByTestId("order-status")).not.toBeInTheDocument();
    await act(() => vi.advanceTimersByTimeAsync(20 * POLL_MS));
    expect(calls).toBe(1);
  });
});
