// Records Content-Security-Policy violations so the test can require none (the dashboard forbids inline styles
// and scripts, and every load that is not from its own origin).
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline") + " " + (e.sourceFile || ""));
});
