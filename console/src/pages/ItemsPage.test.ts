import { describe, expect, it } from "vitest";

import { parseAttributes } from "./ItemEditor";
import { combinedFilter, quoted } from "./ItemsPage";

describe("the items filter", () => {
  it("adds the owner to what was typed, both must hold", () => {
    expect(combinedFilter("", 'status = "PUBLISHED"')).toBe('status = "PUBLISHED"');
    expect(combinedFilter("u-1", "")).toBe('user_id = "u-1"');
    expect(combinedFilter("u-1", "a = 1 OR b = 2")).toBe('user_id = "u-1" AND (a = 1 OR b = 2)');
  });

  it("escapes quotes in a string literal", () => {
    expect(quoted('say "hi" \\ ok')).toBe('"say \\"hi\\" \\\\ ok"');
  });
});

describe("the attributes box", () => {
  it("takes a JSON object, nested values too", () => {
    expect(parseAttributes('{"color": "red", "n": 3, "tags": ["a"], "dim": {"w": 2}}').value).toEqual({
      color: "red",
      n: 3,
      tags: ["a"],
      dim: { w: 2 },
    });
    expect(parseAttributes("  ").value).toEqual({});
  });

  it("says why anything else is refused", () => {
    expect(parseAttributes("{color: red}").error).toMatch(/must be JSON/);
    expect(parseAttributes("[1, 2]").error).toMatch(/JSON object/);
  });
});
