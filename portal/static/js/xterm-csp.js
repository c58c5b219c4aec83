// Lets xterm.js style the serial console under the portal's Content-Security-Policy.
//
// xterm.js 6 (its DOM renderer) styles the terminal in two ways a strict CSP refuses:
//  - <style> elements whose text it computes here (theme colours, cell sizes, scrollbar), which
//    no hash could name: this page's policy accepts <style> elements carrying its per-response
//    nonce, so every <style> made on this page gets that nonce when it is created (before it is
//    inserted, which is when the browser checks);
//  - a style attribute on the cells of 24-bit coloured text, built before the row is inserted:
//    the same declarations set through the CSSOM (style.cssText), which CSP allows.
// Only this origin's scripts run here (script-src 'self'), so neither path is open to injected
// markup: a style attribute parsed from HTML, or set on an element already in the page, is still
// refused. Load this before xterm.js, with nonce="{{ request.csp_style_nonce }}" (portal/csp.py).
(function () {
  "use strict";

  // The browser hides the nonce attribute from the page once parsed; the property keeps it.
  var nonce = document.currentScript && document.currentScript.nonce;
  if (!nonce) return;

  var createElement = Document.prototype.createElement;
  Document.prototype.createElement = function (name, options) {
    var element = createElement.call(this, name, options);
    if (String(name).toLowerCase() === "style") element.setAttribute("nonce", nonce);
    return element;
  };

  var setAttribute = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function (name, value) {
    if (String(name).toLowerCase() === "style" && !this.isConnected && this.style) {
      this.style.cssText = String(value);
      return;
    }
    setAttribute.call(this, name, value);
  };
})();
