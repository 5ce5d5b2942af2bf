/**
 * Catalog: categories, search, price filter, sort and paging. The filters live in the URL
 * (?q=&category=&min=&max=&sort=&page=) so back/forward and shared links work. Paging is
 * cursor based: the tokens of the pages seen so far are kept to go back.
 */
import { ProductService, ProductSort, type Product } from "@gen/shop/product/v1/product_pb.js";
import { type FormEvent, useEffect, useId, useState } from "react";
import { Link, useSearchParams } from "react-router";
import { useClient } from "../api/use-client";
import { useQuery } from "../api/use-query";
import { useCart } from "../cart/CartContext";
import { Price } from "../components/Price";
import { ProductImage } from "../components/ProductImage";
import { Empty, ErrorNotice, Loading } from "../components/Status";
import { parseMoney } from "../money";

const PAGE_SIZE = 12;
const CURRENCY = "USD";

const SORTS: { value: string; label: string; sort: ProductSort }[] = [
  { value: "name", label: "Name (A–Z)", sort: ProductSort.NAME },
  { value: "price-asc", label: "Price: low to high", sort: ProductSort.PRICE_ASC },
  { value: "price-desc", label: "Price: high to low", sort: ProductSort.PRICE_DESC },
  { value: "newest", label: "Newest", sort: ProductSort.NEWEST },
];

export function CatalogPage() {
  const products = useClient(ProductService);
  const [params, setParams] = useSearchParams();
  const q = params.get("q") ?? "";
  const category = params.get("category") ?? "";
  const min = params.get("min") ?? "";
  const max = params.get("max") ?? "";
  const sort = params.get("sort") ?? "name";
  // tokens[i] is the cursor of page i+1; page 1 has none.
  const [tokens, setTokens] = useState<string[]>([""]);
  const [page, setPage] = useState(0);
  const filterKey = [q, category, min, max, sort].join("|");
  useEffect(() => {
    setTokens([""]);
    setPage(0);
  }, [filterKey]);

  const wide = useWideScreen();
  const categories = useQuery((signal) => products.listCategories({}, { signal }), [products]);

  const minPrice = min ? parseMoney(min, CURRENCY) : undefined;
  const maxPrice = max ? parseMoney(max, CURRENCY) : undefined;
  const listing = useQuery<{ products: Product[]; nextPageToken: string }>(
    (signal) =>
      q
        ? products.searchProducts({ query: q, pageSize: PAGE_SIZE, pageToken: tokens[page] }, { signal })
        : products.listProducts(
            {
              pageSize: PAGE_SIZE,
              pageToken: tokens[page],
              category,
              minPrice,
              maxPrice,
              sort: SORTS.find((s) => s.value === sort)?.sort ?? ProductSort.NAME,
            },
            { signal },
          ),
    [products, filterKey, page, tokens[page]],
  );

  const update = (changes: Record<string, string>) => {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) {
      if (v) next.set(k, v);
      else next.delete(k);
    }
    setParams(next);
  };

  const nextToken = listing.status === "success" ? listing.data.nextPageToken : "";
  const goNext = () => {
    if (!nextToken) return;
    setTokens((t) => [...t.slice(0, page + 1), nextToken]);
    setPage(page + 1);
  };

  const heading = q ? `Results for “${q}”` : category ? `Category: ${category}` : "All products";

  return (
    <div className="catalog">
      <aside className="filters" aria-label="Filters">
        <SearchForm initial={q} onSearch={(text) => update({ q: text })} />
        {/* Open on wide screens; on a phone the results come first, filters one tap away. */}
        <details className="filter-details" open={wide}>
          <summary>Categories and price</summary>
          <nav aria-label="Categories">
            <h2 className="h3">Categories</h2>
            {categories.status === "loading" && <Loading label="Loading categories…" />}
            {categories.status === "error" && <ErrorNotice error={categories.error} onRetry={categories.reload} />}
            {categories.status === "success" && (
              <ul className="category-list">
                <li>
                  <button type="button" className="link-button" aria-pressed={!category} onClick={() => update({ category: "" })}>
                    All
                  </button>
                </li>
                {categories.data.categories.map((c) => (
                  <li key={c.slug}>
                    <button
                      type="button"
                      className="link-button"
                      aria-pressed={category === c.slug}
                      disabled={!!q}
                      onClick={() => update({ category: c.slug })}
                    >
                      {c.slug} <span className="count">({c.productCount})</span>
                    </button>
                  </li>
                ))}
              </ul>
            )}
          </nav>
          <PriceFilter min={min} max={max} disabled={!!q} onApply={(lo, hi) => update({ min: lo, max: hi })} />
          {q && <p className="hint">Clear the search to filter by category or price.</p>}
        </details>
      </aside>

      <section className="results" aria-labelledby="results-heading">
        <div className="results-head">
          <h1 id="results-heading">{heading}</h1>
          {q && (
            <button type="button" className="button secondary" onClick={() => update({ q: "" })}>
              Clear search
            </button>
          )}
          {!q && (
            <label className="inline-field">
              Sort by{" "}
              <select value={sort} onChange={(e) => update({ sort: e.target.value === "name" ? "" : e.target.value })}>
                {SORTS.map((s) => (
                  <option key={s.value} value={s.value}>
                    {s.label}
                  </option>
                ))}
              </select>
            </label>
          )}
        </div>
        {listing.status === "loading" && <Loading label="Loading products…" />}
        {listing.status === "error" && <ErrorNotice error={listing.error} onRetry={listing.reload} />}
        {listing.status === "success" && listing.data.products.length === 0 && (
          <Empty title={q ? "No products match your search." : "No products here yet."}>
            <p>Try other words, another category or a wider price range.</p>
          </Empty>
        )}
        {listing.status === "success" && listing.data.products.length > 0 && (
          <ul className="product-grid" aria-label="Products">
            {listing.data.products.map((p) => (
              <ProductCard key={p.id} product={p} />
            ))}
          </ul>
        )}
        <nav className="pager" aria-label="Pages">
          <button type="button" className="button secondary" disabled={page === 0} onClick={() => setPage(page - 1)}>
            ← Previous
          </button>
          <span aria-live="polite">Page {page + 1}</span>
          <button type="button" className="button secondary" disabled={!nextToken} onClick={goNext}>
            Next →
          </button>
        </nav>
      </section>
    </div>
  );
}

function useWideScreen(): boolean {
  const query = "(min-width: 700px)";
  const [wide] = useState(() => typeof window === "undefined" || !window.matchMedia || window.matchMedia(query).matches);
  return wide;
}

function SearchForm({ initial, onSearch }: { initial: string; onSearch: (q: string) => void }) {
  const [text, setText] = useState(initial);
  useEffect(() => setText(initial), [initial]);
  const id = useId();
  const submit = (e: FormEvent) => {
    e.preventDefault();
    onSearch(text.trim());
  };
  return (
    <form role="search" onSubmit={submit} className="search-form">
      <label htmlFor={id}>Search products</label>
      <div className="search-row">
        <input id={id} type="search" value={text} maxLength={200} onChange={(e) => setText(e.target.value)} placeholder="e.g. mug" />
        <button type="submit" className="button">
          Search
        </button>
      </div>
    </form>
  );
}

function PriceFilter(props: { min: string; max: string; disabled: boolean; onApply: (min: string, max: string) => void }) {
  const [min, setMin] = useState(props.min);
  const [max, setMax] = useState(props.max);
  const [error, setError] = useState("");
  useEffect(() => {
    setMin(props.min);
    setMax(props.max);
  }, [props.min, props.max]);
  const apply = (e: FormEvent) => {
    e.preventDefault();
    const lo = min.trim();
    const hi = max.trim();
    if ((lo && !parseMoney(lo, CURRENCY)) || (hi && !parseMoney(hi, CURRENCY))) {
      setError("Enter prices as numbers, e.g. 10 or 24.99.");
      return;
    }
    if (lo && hi && Number(lo) > Number(hi)) {
      setError("The minimum price is above the maximum.");
      return;
    }
    setError("");
    props.onApply(lo, hi);
  };
  return (
    <form className="price-filter" onSubmit={apply} aria-describedby={error ? "price-error" : undefined}>
      <fieldset disabled={props.disabled}>
        <legend className="h3">Price ($)</legend>
        <div className="price-row">
          <label>
            Min
            <input inputMode="decimal" value={min} onChange={(e) => setMin(e.target.value)} aria-invalid={!!error} />
          </label>
          <label>
            Max
            <input inputMode="decimal" value={max} onChange={(e) => setMax(e.target.value)} aria-invalid={!!error} />
          </label>
        </div>
        {error && (
          <p id="price-error" className="field-error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="button secondary">
          Apply
        </button>
      </fieldset>
    </form>
  );
}

function ProductCard({ product }: { product: Product }) {
  const { store } = useCart();
  const [added, setAdded] = useState(false);
  return (
    <li className="product-card">
      <ProductImage url={product.imageUrls[0]} name={product.name} />
      <h2 className="h3">
        <Link to={`/products/${encodeURIComponent(product.id)}`}>{product.name}</Link>
      </h2>
      <p className="meta">{product.category}</p>
      <Price value={product.price} />
      <p className={product.stock > 0 ? "stock" : "stock out"}>{product.stock > 0 ? "In stock" : "Out of stock"}</p>
      <button
        type="button"
        className="button"
        disabled={product.stock <= 0}
        aria-label={`Add ${product.name} to cart`}
        onClick={() => {
          store.add(product);
          setAdded(true);
        }}
      >
        Add to cart
      </button>
      <span className="sr-live" role="status">
        {added ? "Added to cart" : ""}
      </span>
    </li>
  );
}
