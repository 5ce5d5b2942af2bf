import { describe, expect, it } from "vitest";
import { latest, parseSeries } from "./prometheus";
import { sparkPath } from "./Sparkline";

describe("ops figures", () => {
  it("parses a matrix and drops NaN points", () => {
    const s = parseSeries({
      status: "success",
      data: { resultType: "matrix", result: [{ metric: { service: "order" }, values: [[1, "0.5"], [2, "NaN"], [3, "2"]] }] },
    });
    expect(s).toEqual([{ labels: { service: "order" }, points: [[1, 0.5], [3, 2]] }]);
    expect(latest(s[0])).toBe(2);
  });

  it("refuses an error answer", () => {
    expect(() => parseSeries({ status: "error", error: "bad query" })).toThrow("bad query");
  });

  it("draws a path across the whole width", () => {
    expect(sparkPath([[0, 0], [10, 5]], 100, 20)).toBe("M0.0,20.0 L100.0,0.0");
    expect(sparkPath([], 100, 20)).toBe("");
  });
});
