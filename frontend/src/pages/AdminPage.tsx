/**
 * Admin: create products and edit name, description, category, price and stock. The
 * server decides who is an admin (PERMISSION_DENIED otherwise); this page only hides
 * nothing and explains refusals.
 */
import { ProductService, type Product } from "@gen/shop/product/v1/product_pb.js";
import { type FormEvent, useState } from "react";
import { Link } from "react-router";
import { describeError } from "../api/errors";
import { useClient } from "../api/use-client";
import { useQuery } from "../api/use-query";
import { Price } from "../components/Price";
import { RequireLogin } from "../components/RequireLogin";
import { Empty, ErrorNotice, Loading } from "../components/Status";
import { moneyToDecimal, parseMoney } from "../money";

interface ProductForm {
  sku: string;
  name: string;
  description: string;
  category: string;
  price: string;
  stock: string;
  imageUrl: string;
}

const BLANK: ProductForm = { sku: "", name: "", description: "", category: "", price: "", stock: "0", imageUrl: "" };

function toForm(p: Product): ProductForm {
  return {
    sku: p.sku,
    name: p.name,
    description: p.description,
    category: p.category,
    price: p.price ? moneyToDecimal(p.price) : "",
    stock: String(p.stock),
    imageUrl: p.imageUrls[0] ?? "",
  };
}

export function AdminPage() {
  return (
    <section aria-labelledby="admin-heading">
      <h1 id="admin-heading">Admin: products and stock</h1>
      <RequireLogin what="manage products">
        <Admin />
      </RequireLogin>
    </section>
  );
}

function Admin() {
  const products = useClient(ProductService);
  const [tokens, setTokens] = useState<string[]>([""]);
  const [page, setPage] = useState(0);
  const [editing, setEditing] = useState<Product | null>(null);
  const [creating, setCreating] = useState(false);
  const list = useQuery((signal) => products.listProducts({ pageSize: 20, pageToken: tokens[page] }, { signal }), [products, page, tokens[page]]);

  return (
    <div className="admin">
      <div className="admin-list">
        <div className="results-head">
          <h2>Products</h2>
          <button
            type="button"
            className="button"
            onClick={() => {
              setEditing(null);
              setCreating(true);
            }}
          >
            New product
          </button>
        </div>
        {list.status === "loading" && <Loading />}
        {list.status === "error" && <ErrorNotice error={list.error} onRetry={list.reload} />}
        {list.status === "success" && list.data.products.length === 0 && <Empty title="No products yet." />}
        {list.status === "success" && list.data.products.length > 0 && (
          <table className="table">
            <caption className="sr-only">Products</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">SKU</th>
                <th scope="col">Price</th>
                <th scope="col">Stock</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {list.data.products.map((p) => (
                <tr key={p.id} aria-current={editing?.id === p.id || undefined}>
                  <td data-label="Name">{p.name}</td>
                  <td data-label="SKU">{p.sku}</td>
                  <td data-label="Price">
                    <Price value={p.price} />
                  </td>
                  <td data-label="Stock">{p.stock}</td>
                  <td>
                    <button
                      type="button"
                      className="button secondary"
                      aria-label={`Edit ${p.name}`}
                      onClick={() => {
                        setCreating(false);
                        setEditing(p);
                      }}
                    >
                      Edit
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <nav className="pager" aria-label="Pages">
          <button type="button" className="button secondary" disabled={page === 0} onClick={() => setPage(page - 1)}>
            ← Previous
          </button>
          <span>Page {page + 1}</span>
          <button
            type="button"
            className="button secondary"
            disabled={list.status !== "success" || !list.data.nextPageToken}
            onClick={() => {
              if (list.status !== "success") return;
              const next = list.data.nextPageToken;
              setTokens((t) => [...t.slice(0, page + 1), next]);
              setPage(page + 1);
            }}
          >
            Next →
          </button>
        </nav>
      </div>
      {(editing || creating) && (
        <ProductEditor
          key={editing?.id ?? "new"}
          product={editing}
          onSaved={(p) => {
            setEditing(p);
            setCreating(false);
            list.reload();
          }}
          onClose={() => {
            setEditing(null);
            setCreating(false);
          }}
        />
      )}
    </div>
  );
}

function ProductEditor({ product, onSaved, onClose }: { product: Product | null; onSaved: (p: Product) => void; onClose: () => void }) {
  const products = useClient(ProductService);
  const [form, setForm] = useState<ProductForm>(product ? toForm(product) : BLANK);
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState("");
  const [localError, setLocalError] = useState("");
  const badField = error ? describeError(error).field : undefined;
  const currency = product?.price?.currencyCode || "USD";

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    setSaved("");
    const price = parseMoney(form.price, currency);
    const stock = Number(form.stock);
    if (!price) return setLocalError("Enter the price as a number, e.g. 19.99.");
    if (!Number.isInteger(stock) || stock < 0) return setLocalError("Stock must be a whole number, 0 or more.");
    setLocalError("");
    setPending(true);
    try {
      let result: Product | undefined;
      if (product) {
        const original = toForm(product);
        const changed = (k: keyof ProductForm) => form[k] !== original[k];
        const r = await products.updateProduct({
          id: product.id,
          name: changed("name") ? form.name : undefined,
          description: changed("description") ? form.description : undefined,
          category: changed("category") ? form.category : undefined,
          price: changed("price") ? price : undefined,
          stock: changed("stock") ? stock : undefined,
          replaceImageUrls: changed("imageUrl"),
          imageUrls: changed("imageUrl") && form.imageUrl ? [form.imageUrl] : [],
        });
        result = r.product;
      } else {
        const r = await products.createProduct({
          sku: form.sku,
          name: form.name,
          description: form.description,
          category: form.category,
          price,
          stock,
          imageUrls: form.imageUrl ? [form.imageUrl] : [],
        });
        result = r.product;
      }
      if (result) {
        setSaved(`Saved ${result.name}.`);
        onSaved(result);
      }
    } catch (err) {
      setError(err);
    } finally {
      setPending(false);
    }
  };

  const field = (k: keyof ProductForm, label: string, props: React.InputHTMLAttributes<HTMLInputElement> = {}) => (
    <div className="field">
      <label htmlFor={`pe-${k}`}>{label}</label>
      <input
        id={`pe-${k}`}
        value={form[k]}
        onChange={(e) => setForm({ ...form, [k]: e.target.value })}
        aria-invalid={badField === k || badField === `${k}s` || undefined}
        {...props}
      />
    </div>
  );

  return (
    <form className="admin-editor stack-form" onSubmit={submit} aria-labelledby="editor-heading">
      <h2 id="editor-heading">{product ? `Edit ${product.name}` : "New product"}</h2>
      {product && (
        // Names need not be unique (SKUs are): say which product this is and where shoppers see it.
        <p className="meta">
          SKU {product.sku} · <Link to={`/products/${encodeURIComponent(product.id)}`}>View in the shop</Link>
        </p>
      )}
      <fieldset disabled={pending}>
        {!product && field("sku", "SKU", { required: true, pattern: "[A-Za-z0-9_\\-]+" })}
        {field("name", "Name", { required: true, maxLength: 200 })}
        <div className="field">
          <label htmlFor="pe-description">Description</label>
          <textarea id="pe-description" rows={4} maxLength={5000} value={form.description} onChange={(e) => setForm({ ...form, description: e.target.value })} />
        </div>
        {field("category", "Category (lower-case slug)", { required: true, pattern: "[a-z0-9\\-]+" })}
        {field("price", `Price (${currency})`, { required: true, inputMode: "decimal" })}
        {field("stock", "Stock", { required: true, type: "number", min: 0, max: 1000000 })}
        {/* Text, not type="url": the project's own pictures are paths (/images/products/...),
            which a browser's URL check refuses; the service's rule (https or such a path) answers
            a bad one in words, naming the field. */}
        {field("imageUrl", "Image URL or /images/products/ path (optional)", { inputMode: "url" })}
      </fieldset>
      {localError && (
        <p className="field-error" role="alert">
          {localError}
        </p>
      )}
      {error !== null && <ErrorNotice error={error} />}
      <p role="status" className="notice-ok">
        {saved}
      </p>
      <div className="button-row">
        <button type="submit" className="button" disabled={pending}>
          {pending ? "Saving…" : "Save"}
        </button>
        <button type="button" className="button secondary" onClick={onClose}>
          Close
        </button>
      </div>
    </form>
  );
}
