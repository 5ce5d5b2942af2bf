import { Link } from "react-router";
import { useCart } from "../cart/CartContext";
import { cartCount, cartTotal, lineTotal, lineUnitPrice, MAX_QUANTITY } from "../cart/cart";
import { Price } from "../components/Price";
import { ProductImage } from "../components/ProductImage";
import { Empty } from "../components/Status";

export function CartPage() {
  const { cart, store } = useCart();
  if (cart.length === 0) {
    return (
      <section aria-labelledby="cart-heading">
        <h1 id="cart-heading">Your cart</h1>
        {store.error && (
          <p className="state state-error" role="alert">
            {store.error}
          </p>
        )}
        <Empty title="Your cart is empty.">
          <p>
            <Link to="/">Browse the catalog</Link> to find something you like.
          </p>
        </Empty>
      </section>
    );
  }
  return (
    <section aria-labelledby="cart-heading" className="cart">
      <h1 id="cart-heading">Your cart</h1>
      {store.error && (
        <p className="state state-error" role="alert">
          {store.error}
        </p>
      )}
      <ul className="cart-lines" aria-label="Items in your cart">
        {cart.map((line) => (
          <li key={line.productId} className="cart-line">
            <ProductImage url={line.imageUrl} name={line.name} size="thumb" />
            <div className="cart-line-name">
              <Link to={`/products/${encodeURIComponent(line.productId)}`}>{line.name}</Link>
              <span className="meta">
                <Price value={lineUnitPrice(line)} /> each
              </span>
            </div>
            <label className="qty">
              <span className="sr-only">Quantity of {line.name}</span>
              <input
                type="number"
                min={1}
                max={MAX_QUANTITY}
                value={line.quantity}
                onChange={(e) => store.setQuantity(line.productId, Number(e.target.value))}
              />
            </label>
            <Price value={lineTotal(line)} className="price line-total" />
            <button type="button" className="button secondary" onClick={() => store.remove(line.productId)} aria-label={`Remove ${line.name}`}>
              Remove
            </button>
          </li>
        ))}
      </ul>
      <div className="cart-summary">
        <p>
          {cartCount(cart)} item(s), subtotal <Price value={cartTotal(cart)} className="price big-price" />
        </p>
        <p className="hint">Prices are confirmed from the catalog when you place the order.</p>
        <Link className="button" to="/checkout">
          Go to checkout
        </Link>
      </div>
    </section>
  );
}
