// The types of require("selfrag") (index.cjs): those of the ES module it returns.
export * from "../dist/lib/index.js";
