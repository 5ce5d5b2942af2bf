import { create } from "@bufbuild/protobuf";
import { MoneySchema } from "@gen/shop/common/v1/common_pb.js";
import { type Product, ProductSchema, ProductService, type UpdateProductRequest } from "@gen/shop/product/v1/product_pb.js";
import { fireEvent, screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { rolesFromJwt } from "../api/session";
import { setup } from "../test-utils";

describe("admin", () => {
  it("an admin changes a product's price and stock: UpdateProduct carries exactly those, the list shows them", async () => {
    let mug: Product = create(ProductSchema, {
      id: "p-mug",
      sku: "MUG-1",
      name: "Blue mug",
      category: "kitchen",
      description: "A mug.",
      price: create(MoneySchema, { currencyCode: "USD", units: 12n, nanos: 500_000_000 }),
      stock: 10,
    });
    const updates: UpdateProductRequest[] = [];
    const roles: string[][] = [];
    setup(
      (router) =>
        router.service(ProductService, {
          async listProducts() {
            return { products: [mug], nextPageToken: "" };
          },
          async updateProduct(req, ctx) {
            updates.push(req);
            roles.push(rolesFromJwt((ctx.requestHeader.get("authorization") ?? "").replace(/^Bearer /, "")));
            mug = create(ProductSchema, { ...mug, price: req.price ?? mug.price, stock: req.stock ?? mug.stock });
            return { product: mug };
          },
        }),
      { path: "/admin", signedIn: true, roles: ["admin"] },
    );
    expect(within(screen.getByRole("navigation", { name: "Main" })).getByRole("link", { name: "Admin" })).toBeInTheDocument();
    const table = await screen.findByRole("table");
    expect(within(table).getByText("$12.50")).toBeInTheDocument();

    fireEvent.click(screen.getByRole("button", { name: "Edit Blue mug" }));
    const editor = screen.getByRole("form", { name: "Edit Blue mug" });
    expect(within(editor).getByText(/SKU MUG-1/)).toBeInTheDocument();
    expect(within(editor).getByRole("link", { name: "View in the shop" })).toHaveAttribute("href", "/products/p-mug");
    expect(within(editor).getByLabelText("Price (USD)")).toHaveValue("12.5");
    expect(within(editor).getByLabelText("Stock")).toHaveValue(10);
    fireEvent.change(within(editor).getByLabelText("Price (USD)"), { target: { value: "14.25" } });
    fireEvent.change(within(editor).getByLabelText("Stock"), { target: { value: "7" } });
    fireEvent.click(within(editor).getByRole("button", { name: "Save" }));

    expect(await within(editor).findByText("Saved Blue mug.")).toBeInTheDocument();
    expect(updates).toHaveLength(1);
    const req = updates[0];
    expect(req.id).toBe("p-mug");
    expect(req.stock).toBe(7);
    expect(req.price).toMatchObject({ currencyCode: "USD", units: 14n, nanos: 250_000_000 });
    // Only the changed fields are set (UpdateProduct changes only the fields that are set).
    expect(req.name).toBeUndefined();
    expect(req.description).toBeUndefined();
    expect(req.category).toBeUndefined();
    expect(req.replaceImageUrls).toBe(false);
    expect(roles).toEqual([["admin"]]);
    expect(screen.queryByRole("alert")).not.toBeInTheDocument();

    // The list is read again and shows the new figures.
    await waitFor(() => expect(within(screen.getByRole("table")).getByText("$14.25")).toBeInTheDocument());
    const row = within(screen.getByRole("table")).getByText("Blue mug").closest("tr") as HTMLElement;
    expect(within(row).getByText("7")).toBeInTheDocument();
  });
});
