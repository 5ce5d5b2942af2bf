import { create } from "@bufbuild/protobuf";
import { MoneySchema } from "@gen/shop/common/v1/common_pb.js";
import { OrderSchema, OrderService, OrderStatus, type PlaceOrderRequest } from "@gen/shop/order/v1/order_pb.js";
import { ProductSchema } from "@gen/shop/product/v1/product_pb.js";
import { type CreateQuoteRequest, QuoteSchema, ShippingService } from "@gen/shop/shipping/v1/shipping_pb.js";
import { Code, ConnectError } from "@connectrpc/connect";
import { act, fireEvent, screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { setup } from "../test-utils";

const mug = create(ProductSchema, {
  id: "p-mug",
  name: "Blue mug",
  price: create(MoneySchema, { currencyCode: "USD", units: 12n, nanos: 500_000_000 }),
  stock: 10,
});

function fillAddress() {
  const values: Record<string, string> = {
    "Full name": "Ann Example",
    "Street and number": "1 Main St",
    City: "Springfield",
    "Postal code": "12345",
  };
  for (const [label, value] of Object.entries(values)) {
    fireEvent.change(screen.getByLabelText(label), { target: { value } });
  }
}

describe("checkout", () => {
  it("a double click places one order with one idempotency key and disables the button", async () => {
    const calls: PlaceOrderRequest[] = [];
    const headers: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const order = create(OrderSchema, { id: "o-1", userId: "u-1", status: OrderStatus.PENDING });
    const { cart } = setup(
      (router) =>
        router.service(OrderService, {
          async placeOrder(req, ctx) {
            calls.push(req);
            headers.push(ctx.requestHeader.get("authorization") ?? "");
            await gate;
            return { order };
          },
          async getOrder() {
            return { order };
          },
        }),
      { path: "/checkout", signedIn: true },
    );
    act(() => cart.add(mug, 2));
    fillAddress();
    const button = screen.getByRole("button", { name: "Place order" });
    fireEvent.click(button);
    fireEvent.click(button);
    await waitFor(() => expect(screen.getByRole("button", { name: /Placing your order/ })).toBeDisabled());
    // Even a submit that gets past the disabled button (form submit by Enter) is absorbed.
    fireEvent.submit(button.closest("form") as HTMLFormElement);
    release();
    await screen.findByRole("heading", { name: "Order o-1" });
    expect(calls).toHaveLength(1);
    expect(calls[0].idempotencyKey).toMatch(/^checkout-[0-9a-f-]{36}$/);
    expect(calls[0].userId).toBe("u-1");
    expect(calls[0].lines.map((l) => [l.productId, l.quantity])).toEqual([["p-mug", 2]]);
    expect(calls[0].shippingAddress?.postalCode).toBe("12345");
    expect(headers[0]).toMatch(/^Bearer /);
    expect(cart.getSnapshot()).toEqual([]);
    expect(screen.getByText(/Your order has been placed/)).toBeInTheDocument();
  });

  it("shows the field message of INVALID_ARGUMENT and marks the field, keeping the cart", async () => {
    const { cart } = setup(
      (router) =>
        router.service(OrderService, {
          async placeOrder() {
            throw new ConnectError("shipping_address.postal_code: value does not match regex pattern", Code.InvalidArgument);
          },
        }),
      { path: "/checkout", signedIn: true },
    );
    act(() => cart.add(mug));
    fillAddress();
    fireEvent.click(screen.getByRole("button", { name: "Place order" }));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Postal code: value does not match regex pattern");
    expect(screen.getByLabelText("Postal code")).toHaveAttribute("aria-invalid", "true");
    expect(cart.getSnapshot()).toHaveLength(1);
    expect(screen.getByRole("button", { name: "Place order" })).toBeEnabled();
  });

  it("asks a signed-out shopper to log in instead of showing the form", () => {
    setup(() => undefined, { path: "/checkout" });
    expect(screen.getByText("Please log in to check out.")).toBeInTheDocument();
    expect(within(screen.getByRole("main")).getByRole("link", { name: "Log in" })).toHaveAttribute("href", "/login?next=%2Fcheckout");
  });
  it("shows the shipping quote for the country and places the order with it", async () => {
    const calls: PlaceOrderRequest[] = [];
    const quotes: CreateQuoteRequest[] = [];
    const order = create(OrderSchema, { id: "o-9", userId: "u-1", status: OrderStatus.CONFIRMED });
    const { cart } = setup(
      (router) => {
        router.service(OrderService, {
          async placeOrder(req) {
            calls.push(req);
            return { order };
          },
          async getOrder() {
            return { order };
          },
        });
        router.service(ShippingService, {
          async createQuote(req) {
            quotes.push(req);
            return {
              quote: create(QuoteSchema, {
                id: `q-${req.countryCode}`,
                countryCode: req.countryCode,
                price: create(MoneySchema, { currencyCode: "USD", units: 5n, nanos: 990_000_000 }),
              }),
            };
          },
        });
      },
      { path: "/checkout", signedIn: true },
    );
    act(() => cart.add(mug, 2));
    fillAddress();
    await screen.findByText(/Shipping to US:/);
    expect(screen.getByText("$5.99")).toBeInTheDocument();
    fireEvent.change(screen.getByLabelText(/Country code/), { target: { value: "DE" } });
    // Placed at once: the order waits for the quote on its way and names it.
    fireEvent.click(screen.getByRole("button", { name: "Place order" }));
    await screen.findByRole("heading", { name: "Order o-9" });
    expect(calls).toHaveLength(1);
    expect(calls[0].shippingQuoteId).toBe("q-DE");
    expect(calls[0].currencyCode).toBe("USD");
    expect(quotes.at(-1)?.lines.map((l) => [l.productId, l.quantity])).toEqual([["p-mug", 2]]);
  });
});
