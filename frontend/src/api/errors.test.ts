import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { describeError, humanField } from "./errors";

describe("describeError", () => {
  it("INVALID_ARGUMENT shows the field message and names the field", () => {
    const e = describeError(new ConnectError("shipping_address.postal_code: value length must be at least 1 characters", Code.InvalidArgument));
    expect(e.title).toBe("Please check your input");
    expect(e.field).toBe("shipping_address.postal_code");
    expect(e.message).toBe("Postal code: value length must be at least 1 characters");
    expect(e.action).toBe("none");
  });

  it("INVALID_ARGUMENT with several violations lists them all, first field named", () => {
    const e = describeError(new ConnectError("email: value must be a valid email address; password: value length must be at least 8 characters", Code.InvalidArgument));
    expect(e.field).toBe("email");
    expect(e.message).toContain("Email: value must be a valid email address");
    expect(e.message).toContain("Password: value length must be at least 8 characters");
  });

  it("INVALID_ARGUMENT strips list indexes from field paths", () => {
    const e = describeError(new ConnectError("lines[0].quantity: value must be less than or equal to 100", Code.InvalidArgument));
    expect(e.field).toBe("lines.quantity");
    expect(e.message).toBe("Quantity: value must be less than or equal to 100");
  });

  it("UNAUTHENTICATED asks the shopper to log in", () => {
    const e = describeError(new ConnectError("jwt expired", Code.Unauthenticated));
    expect(e.action).toBe("login");
    expect(e.message).toMatch(/log in/i);
    expect(e.message).not.toContain("jwt");
  });

  it("NOT_FOUND, RESOURCE_EXHAUSTED and UNAVAILABLE get plain sentences", () => {
    expect(describeError(new ConnectError("order o-1 not found", Code.NotFound)).title).toBe("Not found");
    const slow = describeError(new ConnectError("rate limited", Code.ResourceExhausted));
    expect(slow.message).toMatch(/wait/i);
    expect(slow.action).toBe("wait");
    const down = describeError(new ConnectError("upstream connect error", Code.Unavailable));
    expect(down.message).toMatch(/try again/i);
    expect(down.action).toBe("retry");
    expect(down.message).not.toContain("upstream");
  });

  it("never shows internal details of unknown errors", () => {
    const e = describeError(new Error("TypeError: x is undefined at foo.ts:12"));
    expect(e.code).toBe(Code.Unknown);
    expect(e.message).not.toContain("TypeError");
    const internal = describeError(new ConnectError("internal error, trace 4bf92f", Code.Internal));
    expect(internal.message).not.toContain("trace");
  });

  it("humanField turns a field path into words", () => {
    expect(humanField("shipping_address.recipient_name")).toBe("Recipient name");
    expect(humanField("email")).toBe("Email");
  });
});
