"use strict";
// require("selfrag"): the ES module dist/lib/index.js itself (see load.cjs).
module.exports = require("./load.cjs").requireEsm("../dist/lib/index.js", "selfrag");
