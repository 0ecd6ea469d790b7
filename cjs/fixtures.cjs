"use strict";
// require("selfrag/fixtures"): the ES module dist/lib/fixtures/index.js itself (see load.cjs).
module.exports = require("./load.cjs").requireEsm("../dist/lib/fixtures/index.js", "selfrag/fixtures");
