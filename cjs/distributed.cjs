"use strict";
// require("selfrag/distributed"): the ES module dist/lib/distributed/index.js itself (see load.cjs).
module.exports = require("./load.cjs").requireEsm("../dist/lib/distributed/index.js", "selfrag/distributed");
