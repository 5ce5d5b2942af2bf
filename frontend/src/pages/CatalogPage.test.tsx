import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { MoneySchema } from "@gen/shop/common/v1/common_pb.js";
import { type ListProductsRequest, ProductSchema, ProductService } from "@gen/shop/product/v1/product_pb.js";
import { fireEvent, screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { STORAGE_KEY } from "../cart/cart";
import { setup } from "../test-utils";

const p = (id: string, name: string, units: bigint, category = "kitchen") =>
  create(ProductSchema, { id, name, category, stock: 3, price: create(MoneySchema, { currencyCode: "USD", units }) });

describe("catalog", () => {
  it("lists products with prices, filters by category and price, pages, and adds to the cart", async () => {
    const requests: ListProductsRequest[] = [];
    setup((router) =>
      router.service(ProductService, {
        async listCategories() {
          return { categories: [{ slug: "kitchen", productCount: 2 }, { slug: "garden", productCount: 1 }] };
        },
        async listProducts(req) {
          requests.push(req);
          if (req.pageToken === "page-2") return { products: [p("p-3", "Rake", 30n, "garden")], nextPageToken: "" };
          return { products: [p("p-1", "Mug", 12n), p("p-2", "Bowl", 8n)], nextPageToken: "page-2" };
        },
      }),
    );
    const grid = await screen.findByRole("list", { name: "Products" });
    expect(within(grid).getByText("Mug")).toBeInTheDocument();
    expect(within(grid).getByText("$12.00")).toBeInTheDocument();

    fireEvent.click(await screen.findByRole("button", { name: /garden/ }));
    await waitFor(() => expect(requests.at(-1)?.category).toBe("garden"));

    fireEvent.change(screen.getByLabelText("Min"), { target: { value: "5" } });
    fireEvent.change(screen.getByLabelText("Max"), { target: { value: "20.50" } });
    fireEvent.click(screen.getByRole("button", { name: "Apply" }));
    await waitFor(() => expect(requests.at(-1)?.maxPrice?.nanos).toBe(500_000_000));
    expect(requests.at(-1)?.minPrice?.units).toBe(5n);
    expect(requests.at(-1)?.category).toBe("garden");

    fireEvent.click(await screen.findByRole("button", { name: "Next →" }));
    await screen.findByText("Rake");
    expect(requests.at(-1)?.pageToken).toBe("page-2");
    expect(screen.getByText("Page 2")).toBeInTheDocument();

    fireEvent.click(screen.getByRole("button", { name: "Add Rake to cart" }));
    expect(JSON.parse(localStorage.getItem(STORAGE_KEY) ?? "[]")[0].productId).toBe("p-3");
    expect(screen.getByRole("link", { name: /Cart \(1\)/ })).toBeInTheDocument();
  });

  it("searches with SearchProducts and shows an empty state", async () => {
    const queries: string[] = [];
    setup((router) =>
      router.service(ProductService, {
        async listCategories() {
          return { categories: [] };
        },
        async listProducts() {
          return { products: [p("p-1", "Mug", 12n)] };
        },
        async searchProducts(req) {
          queries.push(req.query);
          return { products: [] };
        },
      }),
    );
    await screen.findByText("Mug");
    fireEvent.change(screen.getByLabelText("Search products"), { target: { value: "unicorn" } });
    fireEvent.click(screen.getByRole("button", { name: "Search" }));
    expect(await screen.findByText("No products match your search.")).toBeInTheDocument();
    expect(queries).toEqual(["unicorn"]);
  });

  it("says when the shop is unreachable and offers a retry that works", async () => {
    let fail = true;
    setup((router) =>
      router.service(ProductService, {
        async listCategories() {
          return { categories: [] };
        },
        async listProducts() {
          if (fail) throw new ConnectError("upstream connect error or disconnect", Code.Unavailable);
          return { products: [p("p-1", "Mug", 12n)] };
        },
      }),
    );
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("We couldn't reach the shop just now");
    expect(alert).not.toHaveTextContent("upstream");
    fail = false;
    fireEvent.click(within(alert).getByRole("button", { name: "Try again" }));
    expect(await screen.findByText("Mug")).toBeInTheDocument();
  });
});
