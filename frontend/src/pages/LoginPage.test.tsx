import { Code, ConnectError } from "@connectrpc/connect";
import { AuthService } from "@gen/shop/auth/v1/auth_pb.js";
import { fireEvent, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { setup, tokenPair } from "../test-utils";
import { safeNext } from "./LoginPage";

function fill(email: string, password: string) {
  fireEvent.change(screen.getByLabelText("Email"), { target: { value: email } });
  fireEvent.change(screen.getByLabelText("Password"), { target: { value: password } });
  fireEvent.click(screen.getByRole("button", { name: "Log in" }));
}

describe("login", () => {
  it("says the credentials are wrong instead of asking to log in", async () => {
    setup((r) => r.service(AuthService, { async login() { throw new ConnectError("invalid credentials", Code.Unauthenticated); } }), { path: "/login" });
    fill("ann@example.com", "nope");
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Wrong email or password");
    expect(alert).not.toHaveTextContent("invalid credentials");
  });

  it("logs in, keeps the access token in memory only, and goes back to ?next", async () => {
    const { session } = setup(
      (r) => r.service(AuthService, { async login(req) { return { tokens: tokenPair(`access-for-${req.email}`, "refresh-token-0000000001", "u-7") }; } }),
      { path: "/login?next=%2Fcart" },
    );
    fill("ann@example.com", "secret-password");
    expect(await screen.findByRole("heading", { name: "Your cart" })).toBeInTheDocument();
    expect(session.getSnapshot()).toMatchObject({ userId: "u-7", email: "ann@example.com" });
    expect(JSON.stringify({ ...sessionStorage })).not.toContain("access-for-");
    expect(screen.getByRole("button", { name: "Log out" })).toBeInTheDocument();
  });

  it("never redirects off-site after login", () => {
    expect(safeNext("/orders")).toBe("/orders");
    expect(safeNext("//evil.example")).toBe("/");
    expect(safeNext("https://evil.example")).toBe("/");
    expect(safeNext(null)).toBe("/");
  });
});
