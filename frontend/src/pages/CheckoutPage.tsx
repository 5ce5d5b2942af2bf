/**
 * Checkout: shipping address and one "Place order" button that places exactly one order.
 * The button is disabled while the call is pending, and CheckoutGuard makes a second
 * submit (double click, Enter twice, retry after a timeout) reuse the same in-flight call
 * and the same idempotency key.
 */
import { create } from "@bufbuild/protobuf";
import { AddressSchema, type Address } from "@gen/shop/common/v1/common_pb.js";
import { OrderService, type Order } from "@gen/shop/order/v1/order_pb.js";
import { type FormEvent, useRef, useState } from "react";
import { Link, useNavigate } from "react-router";
import { describeError, humanField } from "../api/errors";
import { useClient, useSession } from "../api/use-client";
import { useCart } from "../cart/CartContext";
import { cartTotal, type Cart } from "../cart/cart";
import { CheckoutGuard } from "../checkout/guard";
import { Price } from "../components/Price";
import { RequireLogin } from "../components/RequireLogin";
import { type QuoteState, useShippingQuote } from "../checkout/useShippingQuote";
import { BASE_CURRENCY, useCurrency } from "../currency/CurrencyContext";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Empty, ErrorNotice } from "../components/Status";

type AddressFields = Omit<Address, "$typeName" | "$unknown">;

const EMPTY_ADDRESS: AddressFields = {
  recipientName: "",
  line1: "",
  line2: "",
  city: "",
  region: "",
  postalCode: "",
  countryCode: "US",
};

const FIELDS: { key: keyof AddressFields; label: string; required: boolean; autoComplete: string }[] = [
  { key: "recipientName", label: "Full name", required: true, autoComplete: "name" },
  { key: "line1", label: "Street and number", required: true, autoComplete: "address-line1" },
  { key: "line2", label: "Flat, floor, company (optional)", required: false, autoComplete: "address-line2" },
  { key: "city", label: "City", required: true, autoComplete: "address-level2" },
  { key: "region", label: "State or region (optional)", required: false, autoComplete: "address-level1" },
  { key: "postalCode", label: "Postal code", required: true, autoComplete: "postal-code" },
  { key: "countryCode", label: "Country code (2 letters, e.g. US)", required: true, autoComplete: "country" },
];

export function cartFingerprint(cart: Cart, address: AddressFields, currency = "", quoteId = ""): string {
  return JSON.stringify([cart.map((l) => [l.productId, l.quantity]), address, currency, quoteId]);
}

export function CheckoutPage() {
  return (
    <section aria-labelledby="checkout-heading" className="checkout">
      <h1 id="checkout-heading">Checkout</h1>
      <RequireLogin what="check out">
        <CheckoutForm />
      </RequireLogin>
    </section>
  );
}

function CheckoutForm() {
  const { cart, store } = useCart();
  const { info } = useSession();
  const orders = useClient(OrderService);
  const navigate = useNavigate();
  const guard = useRef(new CheckoutGuard<Order>()).current;
  const [address, setAddress] = useState<AddressFields>(EMPTY_ADDRESS);
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const currency = useCurrency()?.currency ?? BASE_CURRENCY;
  const lines = cart.map((l) => ({ productId: l.productId, quantity: l.quantity }));
  const quote = useShippingQuote(lines, address.countryCode, currency);


  if (cart.length === 0) {
    return (
      <Empty title="Your cart is empty.">
        <p>
          <Link to="/">Browse the catalog</Link> first.
        </p>
      </Empty>
    );
  }

  const badField = error ? describeError(error).field : undefined;

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!info) return;
    setPending(true);
    setError(null);
    try {
      // A quote on its way is waited for (the shipping call's own deadline bounds it).
      const settledQuote = await quote.settled();
      const quoteId = settledQuote.status === "ready" ? settledQuote.quote.id : undefined;
      const fingerprint = cartFingerprint(cart, address, currency, quoteId);
      const order = await guard.submit(fingerprint, (idempotencyKey) =>
        orders
          .placeOrder({
            idempotencyKey,
            userId: info.userId,
            lines: cart.map((l) => ({ productId: l.productId, quantity: l.quantity })),
            shippingAddress: create(AddressSchema, { ...address, countryCode: address.countryCode.trim().toUpperCase() }),
            currencyCode: currency,
            shippingQuoteId: quoteId,
          })
          .then((r) => {
            if (!r.order) throw new Error("no order in response");
            return r.order;
          }),
      );
      store.clear();
      navigate(`/orders/${encodeURIComponent(order.id)}?placed=1`);
    } catch (err) {
      setError(err);
    } finally {
      setPending(false);
    }
  };

  return (
    <form className="checkout-form" onSubmit={submit} noValidate={false}>
      <fieldset disabled={pending}>
        <legend className="h2">Shipping address</legend>
        {FIELDS.map((f) => {
          const invalid = badField !== undefined && humanField(badField).toLowerCase() === humanField(snake(f.key)).toLowerCase();
          return (
            <div className="field" key={f.key}>
              <label htmlFor={`addr-${f.key}`}>{f.label}</label>
              <input
                id={`addr-${f.key}`}
                name={f.key}
                required={f.required}
                autoComplete={f.autoComplete}
                aria-invalid={invalid || undefined}
                maxLength={f.key === "countryCode" ? 2 : 200}
                value={address[f.key]}
                onChange={(e) => setAddress({ ...address, [f.key]: e.target.value })}
              />
            </div>
          );
        })}
      </fieldset>
      <div className="checkout-summary">
        <p>
          {cart.length} product(s), estimated total <Price value={cartTotal(cart)} className="price big-price" />
        </p>
        <ShippingLine state={quote} />
        {error !== null && <ErrorNotice error={error} />}
        <button type="submit" className="button big" disabled={pending} aria-disabled={pending}>
          {pending ? "Placing your order…" : "Place order"}
        </button>
        <p className="hint" aria-live="polite">
          {pending ? "Please wait, don't close this page." : ""}
        </p>
      </div>
    </form>
  );
}

function snake(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** The quote at checkout, or why there is none (the order is placed either way). */
function ShippingLine({ state }: { state: QuoteState }) {
  return (
    <p className="shipping-quote" aria-live="polite">
      {state.status === "idle" && "Enter the destination country for a shipping quote."}
      {state.status === "loading" && "Getting a shipping quote…"}
      {state.status === "ready" && (
        <>
          Shipping to {state.quote.countryCode}: <Price value={state.quote.price} fixed className="price quote-price" />
          {state.quote.expireTime && (
            <span className="hint"> (quote valid until {timestampDate(state.quote.expireTime).toLocaleTimeString()})</span>
          )}
        </>
      )}
      {state.status === "unavailable" &&
        "Shipping quote unavailable right now: the standard shipping rate applies to this order."}
    </p>
  );
}
