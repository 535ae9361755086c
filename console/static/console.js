// Airlock console: progressive enhancement only (every page works without
// it). Data from the server is attacker-influenced (image names, package
// names): this script only ever sets textContent, never HTML.
"use strict";
