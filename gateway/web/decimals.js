// Plain decimal strings (the venue's, and figures typed that pass the page's `PLAIN_DECIMAL`)
// read exactly, as BigInt units: Number() rounds a big figure's last unit. The page's one
// reading of them: the book's order (book.js) and the form's checks and comparisons (app.js).

export function decimalUnits(text, decimals) {
  // A plain decimal in units of its scale; null if finer than the scale. Zeros past the scale
  // are no finer: the venue takes "187.300" as 187.30.
  const [whole, fraction = ""] = text.split(".");
  const kept = fraction.replace(/0+$/, "");
  if (kept.length > decimals) return null;
  return BigInt(whole + kept.padEnd(decimals, "0"));
}

export function compareDecimals(a, b) {
  // Two plain decimals compared exactly: negative, zero or positive ("180" and "0180.00" are
  // the same)
  const decimals = Math.max(fractionDigits(a), fractionDigits(b));
  const difference = decimalUnits(a, decimals) - decimalUnits(b, decimals);
  return difference < 0n ? -1 : difference > 0n ? 1 : 0;
}

function fractionDigits(text) {
  const [, fraction = ""] = text.split(".");
  return fraction.replace(/0+$/, "").length;
}
