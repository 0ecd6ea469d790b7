// The types of require("selfrag/fixtures") (fixtures.cjs): those of the ES module it returns.
export * from "../dist/lib/fixtures/index.js";
