import { ProductService } from "@gen/shop/product/v1/product_pb.js";
import { useId, useState } from "react";
import { Link, useParams } from "react-router";
import { useClient } from "../api/use-client";
import { useQuery } from "../api/use-query";
import { useCart } from "../cart/CartContext";
import { MAX_QUANTITY } from "../cart/cart";
import { Price } from "../components/Price";
import { ProductImage } from "../components/ProductImage";
import { Recommendations } from "../components/Recommendations";
import { ErrorNotice, Loading } from "../components/Status";

export function ProductPage() {
  const { id = "" } = useParams();
  const products = useClient(ProductService);
  const { store } = useCart();
  const query = useQuery((signal) => products.getProduct({ id }, { signal }), [products, id]);
  const [quantity, setQuantity] = useState(1);
  const [added, setAdded] = useState("");
  const qtyId = useId();

  if (query.status === "loading") return <Loading label="Loading product…" />;
  if (query.status === "error") return <ErrorNotice error={query.error} onRetry={query.reload} />;
  const product = query.data.product;
  if (!product) return <ErrorNotice error={new Error("empty response")} />;
  const maxQty = Math.max(1, Math.min(MAX_QUANTITY, product.stock));

  return (
    <article className="product-detail">
      <p>
        <Link to="/">← Back to the catalog</Link>
      </p>
      <div className="product-detail-body">
        <ProductImage url={product.imageUrls[0]} name={product.name} size="large" />
        <div>
          <h1>{product.name}</h1>
          <p className="meta">
            {product.category} · SKU {product.sku}
          </p>
          <p className="big-price">
            <Price value={product.price} />
          </p>
          <p className={product.stock > 0 ? "stock" : "stock out"}>
            {product.stock > 0 ? `${product.stock} in stock` : "Out of stock"}
          </p>
          <p className="description">{product.description}</p>
          <form
            className="add-form"
            onSubmit={(e) => {
              e.preventDefault();
              store.add(product, quantity);
              setAdded(`Added ${quantity} × ${product.name} to your cart.`);
            }}
          >
            <label htmlFor={qtyId}>Quantity</label>
            <input
              id={qtyId}
              type="number"
              min={1}
              max={maxQty}
              value={quantity}
              onChange={(e) => setQuantity(Math.max(1, Math.min(maxQty, Number(e.target.value) || 1)))}
            />
            <button type="submit" className="button" disabled={product.stock <= 0}>
              Add to cart
            </button>
          </form>
          <p role="status" className="notice-ok">
            {added && (
              <>
                {added} <Link to="/cart">View cart</Link>
              </>
            )}
          </p>
        </div>
      </div>
      <Recommendations productId={product.id} />
    </article>
  );
}
