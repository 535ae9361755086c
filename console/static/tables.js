// Airlock console: sorting of tables in the page (progressive
// enhancement: without this script the header buttons of the image page
// submit the filter form and the server sorts). A table opts in with the
// data-sortable attribute; each th holding a button.sort sorts by its
// column. A cell sorts by its data-sort attribute when it has one (a
// severity rank, an ISO time), else by its text; numbers compare as
// numbers. The table's cells are moved, never rewritten: this script
// reads textContent and writes no HTML (the data is attacker-controlled).
"use strict";

(function () {
  var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

  function key(row, col) {
    var cell = row.cells[col];
    if (!cell) {
      return "";
    }
    var v = cell.getAttribute("data-sort");
    return v !== null ? v : cell.textContent.trim();
  }

  function compare(a, b) {
    var na = Number(a), nb = Number(b);
    if (a !== "" && b !== "" && !isNaN(na) && !isNaN(nb)) {
      return na - nb;
    }
    return collator.compare(a, b);
  }

  function sortBy(table, th) {
    var body = table.tBodies[0];
    if (!body) {
      return;
    }
    var col = th.cellIndex;
    // The first click sorts ascending, the next descending, and so on.
    var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    var sign = dir === "ascending" ? 1 : -1;
    var rows = Array.prototype.slice.call(body.rows);
    rows.forEach(function (r, i) { r._order = i; });
    rows.sort(function (a, b) {
      return sign * compare(key(a, col), key(b, col)) || a._order - b._order;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(th.parentNode.cells, function (h) {
      if (h !== th) {
        h.removeAttribute("aria-sort");
      }
    });
    th.setAttribute("aria-sort", dir);
  }

  document.querySelectorAll("table[data-sortable]").forEach(function (table) {
    table.querySelectorAll("thead th button.sort").forEach(function (button) {
      var th = button.closest("th");
      button.addEventListener("click", function (ev) {
        // Sorting here replaces the server round trip of a submit button.
        ev.preventDefault();
        sortBy(table, th);
      });
    });
  });
})();
