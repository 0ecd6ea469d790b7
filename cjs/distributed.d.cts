// The types of require("selfrag/distributed") (distributed.cjs): those of the ES module it returns.
export * from "../dist/lib/distributed/index.js";
