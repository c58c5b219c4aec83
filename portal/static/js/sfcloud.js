// Behaviour shared by every portal page. base.html loads this in <head>, not deferred, so the
// saved theme is applied before the first paint; everything else listens on `document`, so it
// also works for content that htmx swaps in later.
(function () {
  "use strict";

  var root = document.documentElement;
  root.classList.add("js");

  // ---- Theme: "system" follows prefers-color-scheme; "light"/"dark" are pinned. -------------

  var THEME_KEY = "sfcloud-theme";

  // The first click always changes what is on screen: from "system" it goes to the other look.
  function nextTheme(current) {
    var prefersDark = window.matchMedia("(prefers-color-scheme: dark)").matches;
    var order = prefersDark ? ["system", "light", "dark"] : ["system", "dark", "light"];
    return order[(order.indexOf(current) + 1) % order.length];
  }

  function storedTheme() {
    // localStorage throws when storage is disabled; the system theme is the right fallback.
    var t = null;
    try { t = localStorage.getItem(THEME_KEY); } catch (e) { /* fall through */ }
    return t === "light" || t === "dark" ? t : "system";
  }

  function applyTheme(choice) {
    if (choice === "light" || choice === "dark") root.dataset.theme = choice;
    else delete root.dataset.theme;
    document.querySelectorAll("[data-theme-toggle]").forEach(function (btn) {
      btn.dataset.choice = choice;
      btn.setAttribute("aria-label", "Colour theme: " + choice);
      btn.title = "Colour theme: " + choice + " (click to change)";
    });
  }

  function setTheme(choice) {
    try {
      if (choice === "system") localStorage.removeItem(THEME_KEY);
      else localStorage.setItem(THEME_KEY, choice);
    } catch (e) { /* the choice still holds for this page */ }
    applyTheme(choice);
  }

  applyTheme(storedTheme());
  // A choice made in another tab follows here too.
  window.addEventListener("storage", function (e) {
    if (e.key === THEME_KEY || e.key === null) applyTheme(storedTheme());
  });

  // ---- Small helpers ------------------------------------------------------------------------

  function icon(name, cls) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "icon" + (cls ? " " + cls : ""));
    svg.setAttribute("aria-hidden", "true");
    var use = document.createElementNS(ns, "use");
    use.setAttribute("href", (root.dataset.icons || "") + "#" + name);
    svg.appendChild(use);
    return svg;
  }

  // Polite announcements that have no visible text of their own ("Copied").
  function announce(text) {
    var region = document.getElementById("announcer");
    if (!region) return;
    region.textContent = "";
    // A fresh text node after a tick is what makes screen readers repeat the same message.
    setTimeout(function () { region.textContent = text; }, 50);
  }

  // ---- Toasts -------------------------------------------------------------------------------

  var TOAST_ICONS = { success: "check-circle", error: "alert", warning: "alert" };
  var TOAST_NAMES = { success: "Success", error: "Error", warning: "Warning" };
  var AUTOHIDE_MS = 6000;

  function toast(text, level) {
    level = level || "info";
    var box = document.getElementById("messages");
    if (!box) return;
    var el = document.createElement("div");
    el.className = "toast toast--" + level;
    if (level === "success" || level === "info") el.dataset.autohide = "";
    var ic = icon(TOAST_ICONS[level] || "info");
    ic.removeAttribute("aria-hidden");
    ic.setAttribute("role", "img");
    ic.setAttribute("aria-label", TOAST_NAMES[level] || "Note");
    var body = document.createElement("div");
    body.className = "toast__text";
    body.textContent = text;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "btn btn--ghost btn--small btn--icon";
    close.dataset.dismiss = "";
    close.setAttribute("aria-label", "Dismiss");
    close.appendChild(icon("x"));
    el.append(ic, body, close);
    box.appendChild(el);
    scheduleAutohide(el);
  }

  // Fading messages wait while the pointer or focus is on them, so nobody loses one mid-read.
  function scheduleAutohide(el) {
    if (!("autohide" in el.dataset)) return;
    setTimeout(function check() {
      if (!el.isConnected) return;
      var box = el.parentElement;
      if (box && (box.matches(":hover") || box.contains(document.activeElement))) {
        setTimeout(check, 1500);
      } else {
        el.remove();
      }
    }, AUTOHIDE_MS);
  }

  function dismiss(el) {
    var next = el.nextElementSibling || el.previousElementSibling;
    var hadFocus = el.contains(document.activeElement);
    el.remove();
    // Keep keyboard users inside the stack, or hand them back to the page.
    if (hadFocus) {
      var target = next && next.querySelector("[data-dismiss]");
      (target || document.getElementById("main")).focus();
    }
  }

  // ---- Copy buttons ---------------------------------------------------------------------------

  function copyText(text, restoreFocus) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    // A portal on plain HTTP (usual on a home or lab LAN) has no Clipboard API; the older
    // selection route still works there.
    return new Promise(function (resolve, reject) {
      var ta = document.createElement("textarea");
      ta.value = text;
      ta.setAttribute("readonly", "");
      ta.style.position = "fixed";
      ta.style.opacity = "0";
      document.body.appendChild(ta);
      ta.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      ta.remove();
      if (restoreFocus) restoreFocus.focus();
      if (ok) resolve(); else reject(new Error("copy refused"));
    });
  }

  function copyFrom(btn) {
    var text = btn.dataset.copy || "";
    copyText(text, btn).then(function () {
      btn.dataset.copied = "";
      announce("Copied");
      clearTimeout(btn._copiedTimer);
      btn._copiedTimer = setTimeout(function () { delete btn.dataset.copied; }, 1500);
    }, function () {
      toast("Could not copy to the clipboard; select the text and copy it by hand.", "warning");
    });
  }

  // ---- Dialogs: invoker commands (commandfor/command), polyfilled where missing -------------

  var nativeCommands = typeof HTMLButtonElement !== "undefined" &&
    "command" in HTMLButtonElement.prototype;

  function runCommand(btn) {
    var target = document.getElementById(btn.getAttribute("commandfor"));
    if (!target || target.tagName !== "DIALOG") return;
    var cmd = btn.getAttribute("command");
    if (cmd === "show-modal" && !target.open) target.showModal();
    else if (cmd === "close" || cmd === "request-close") target.close();
  }

  // A shared dialog (components/confirm_dialog.html without an action) is aimed by the button
  // that opens it: the button names the dialog, the URL to post to and what fills the text.
  function openConfirm(btn) {
    var dialog = document.getElementById(btn.dataset.confirm);
    if (!dialog || dialog.tagName !== "DIALOG") return;
    var form = dialog.querySelector("form");
    if (form && btn.dataset.action) form.action = btn.dataset.action;
    dialog.querySelectorAll("[data-fill]").forEach(function (el) {
      el.textContent = btn.dataset[el.dataset.fill] || "";
    });
    dialog.showModal();
  }

  // ---- Fields shown by a choice -----------------------------------------------------------------

  // <div data-shown-by="id_image" data-shown-for="__url__"> is shown only while the control with
  // that id has that value, or one of them ("tcp udp"): the portal's CSP allows no inline
  // handlers to do this page by page.
  function syncShown(scope) {
    scope.querySelectorAll("[data-shown-by]").forEach(function (el) {
      var control = document.getElementById(el.dataset.shownBy);
      if (control) el.hidden = el.dataset.shownFor.split(" ").indexOf(control.value) < 0;
    });
  }
  document.addEventListener("change", function () { syncShown(document); });

  // ---- Live-connection indicator (htmx ws extension) -----------------------------------------

  // Each ws-connect element has a state; the dot shows the worst of them. Three failed
  // attempts in a row without an open turn "reconnecting" into "offline" (the extension keeps
  // retrying, with backoff, and an open puts it back to "connected").
  var RETRY_CODES = [1006, 1011, 1012, 1013];
  var LABELS = { connecting: "Connecting", connected: "Live", reconnecting: "Reconnecting", offline: "Offline" };
  var RANK = { connected: 0, connecting: 1, reconnecting: 2, offline: 3 };
  var sockets = new Map();

  function socketState(elt, state, failed) {
    var prev = sockets.get(elt) || { state: "connecting", failures: 0 };
    var failures = failed ? prev.failures + 1 : (state === "connected" ? 0 : prev.failures);
    if (state === "reconnecting" && failures >= 3) state = "offline";
    sockets.set(elt, { state: state, failures: failures });
    renderLive();
  }

  function renderLive() {
    var live = document.getElementById("live");
    if (!live) return;
    var worst = null;
    sockets.forEach(function (s, elt) {
      if (!elt.isConnected) { sockets.delete(elt); return; }
      if (worst === null || RANK[s.state] > RANK[worst]) worst = s.state;
    });
    if (worst !== null && !navigator.onLine) worst = "offline";
    var state = worst || "idle";
    if (live.dataset.state === state) return;
    live.dataset.state = state;
    var label = live.querySelector(".live__label");
    // The visible word is also what the status region announces.
    if (label) label.textContent = state === "idle" ? "" : LABELS[state];
    live.title = state === "idle" ? "Live updates" : "Live updates: " + LABELS[state].toLowerCase();
  }

  document.addEventListener("htmx:wsConnecting", function (e) {
    var s = sockets.get(e.target);
    socketState(e.target, s && s.state !== "connecting" ? s.state : "connecting", false);
  });
  document.addEventListener("htmx:wsOpen", function (e) { socketState(e.target, "connected", false); });
  document.addEventListener("htmx:wsClose", function (e) {
    var code = e.detail && e.detail.event ? e.detail.event.code : 1006;
    if (!e.target.isConnected) { sockets.delete(e.target); renderLive(); return; }
    socketState(e.target, RETRY_CODES.indexOf(code) >= 0 ? "reconnecting" : "offline", true);
  });
  document.addEventListener("htmx:wsError", function (e) {
    // An error is followed by a close, which counts the failure; this only shows it sooner.
    var s = sockets.get(e.target);
    if (!s || s.state === "connected" || s.state === "connecting") socketState(e.target, "reconnecting", false);
  });
  window.addEventListener("offline", renderLive);
  window.addEventListener("online", function () {
    sockets.forEach(function (s, elt) { if (s.state === "offline") sockets.set(elt, { state: "reconnecting", failures: 0 }); });
    renderLive();
  });

  // ---- htmx glue --------------------------------------------------------------------------

  // aria-busy tells assistive technology what the spinner (CSS on .htmx-request) shows.
  document.addEventListener("htmx:beforeRequest", function (e) {
    if (e.detail.elt) e.detail.elt.setAttribute("aria-busy", "true");
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    var elt = e.detail.elt;
    if (elt) elt.removeAttribute("aria-busy");
    // A confirmed action posted by htmx from a dialog closes it once the server agreed.
    var dialog = elt && elt.closest && elt.closest("dialog[open]");
    if (dialog && e.detail.successful) dialog.close();
    // A form that adds one item at a time empties itself once the server took it.
    if (e.detail.successful && elt && elt.matches && elt.matches("form[data-reset-on-success]")) elt.reset();
  });
  document.addEventListener("htmx:responseError", function (e) {
    var xhr = e.detail.xhr;
    toast("The request failed: " + xhr.status + " " + (xhr.statusText || "error") + ".", "error");
  });
  document.addEventListener("htmx:sendError", function () {
    toast("Could not reach the portal. Check the connection and try again.", "error");
  });
  // A server can raise a toast from any htmx response: HX-Trigger: {"sfcloud:toast": {"text": "...", "level": "success"}}
  document.addEventListener("sfcloud:toast", function (e) {
    if (e.detail && e.detail.text) toast(e.detail.text, e.detail.level);
  });

  // After a failed submission, start the keyboard at the first field that needs fixing
  // (a form marked data-no-autofocus opts out).
  function focusFirstInvalid(scope) {
    var bad = scope.querySelector &&
      scope.querySelector("form:not([data-no-autofocus]) [aria-invalid='true']");
    if (bad) bad.focus();
  }
  document.addEventListener("htmx:afterSwap", function (e) {
    // An outerHTML swap replaced the target: look in what took its place.
    var target = e.detail.target;
    var scope = target.isConnected ? target : (target.id && document.getElementById(target.id)) || document;
    focusFirstInvalid(scope);
  });

  // ---- Sorting a table by a figure ------------------------------------------------------------

  // A table[data-sortable] whose header holds a button[data-sort-column] sorts, on a click, by
  // that column's cells' data-sort-value, largest first; a second click restores the server's
  // order. Live updates (rows and cells swapped in over the websocket) keep the chosen order.
  function columnIndex(th) {
    return Array.prototype.indexOf.call(th.parentElement.children, th);
  }

  function sortTable(table) {
    var th = table.querySelector("th[aria-sort='descending']");
    var body = table.tBodies[0];
    if (!body) return;
    var rows = Array.prototype.slice.call(body.rows);
    rows.forEach(function (row, i) { if (row.dataset.order === undefined) row.dataset.order = i; });
    var key;
    if (th) {
      var index = columnIndex(th);
      key = function (row) {
        var cell = row.cells[index];
        var v = cell ? parseFloat(cell.dataset.sortValue) : NaN;
        return isNaN(v) ? -Infinity : -v;
      };
    } else {
      key = function (row) { return parseFloat(row.dataset.order); };
    }
    var sorted = rows.slice().sort(function (a, b) { return key(a) - key(b); });
    if (sorted.every(function (row, i) { return row === rows[i]; })) return;
    sorted.forEach(function (row) { body.appendChild(row); });
  }

  function toggleSort(btn) {
    var th = btn.closest("th");
    var table = btn.closest("table");
    var on = th.getAttribute("aria-sort") !== "descending";
    table.querySelectorAll("th[aria-sort]").forEach(function (h) { h.setAttribute("aria-sort", "none"); });
    // Rows swapped in since the page came get their place in the server's order from now.
    Array.prototype.forEach.call(table.tBodies[0] ? table.tBodies[0].rows : [], function (row, i) {
      if (!on) return;
      row.dataset.order = i;
    });
    th.setAttribute("aria-sort", on ? "descending" : "none");
    sortTable(table);
    announce(on ? "Sorted by " + btn.textContent.trim() + ", largest first" : "Sorted as listed");
  }

  document.addEventListener("htmx:wsAfterMessage", function (e) {
    var scope = e.target instanceof Element ? e.target : document;
    scope.querySelectorAll("table[data-sortable]").forEach(function (table) {
      if (table.querySelector("th[aria-sort='descending']")) sortTable(table);
    });
  });

  // ---- Tabs that are addresses ------------------------------------------------------------------

  // <ul data-tabs> of links, each with data-tab="name", and panels [data-tab-panel="name"] on the
  // page: a click shows its panel without a reload and puts its address in the history, so a
  // reload, a bookmark or Back shows the same tab. The panel shown gets "sfcloud:tabshown" (its
  // scripts start then: a console, graphs); detail.pointer says whether a pointer chose it.
  function showTab(list, name, pointer, push) {
    var link = list.querySelector("[data-tab='" + name + "']");
    if (!link) return false;
    list.querySelectorAll("[data-tab]").forEach(function (a) {
      if (a === link) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    });
    var panel = null;
    document.querySelectorAll("[data-tab-panel]").forEach(function (p) {
      var on = p.dataset.tabPanel === name;
      p.hidden = !on;
      if (on) panel = p;
    });
    if (push) history.pushState({ tab: name }, "", link.href);
    var label = link.textContent.trim();
    var base = document.title.split(" · ");
    document.title = (name === "summary" ? [base[0]] : [base[0], label]).concat(base.slice(-1)).join(" · ");
    if (panel) panel.dispatchEvent(new CustomEvent("sfcloud:tabshown", { bubbles: true, detail: { tab: name, pointer: pointer } }));
    return true;
  }

  window.addEventListener("popstate", function () {
    document.querySelectorAll("[data-tabs]").forEach(function (list) {
      var here = Array.prototype.find.call(list.querySelectorAll("[data-tab]"), function (a) {
        return a.pathname === location.pathname;
      });
      if (here) showTab(list, here.dataset.tab, false, false);
    });
  });

  // ---- Row menus (popovers) -------------------------------------------------------------------

  // A menu opens under its button (the top layer has no anchor to it in every browser yet), and
  // closes once one of its items was chosen.
  document.addEventListener("toggle", function (e) {
    var menu = e.target;
    if (!(menu instanceof HTMLElement) || !menu.classList.contains("menu") || e.newState !== "open") return;
    var button = document.querySelector("[popovertarget='" + menu.id + "']");
    if (!button) return;
    var r = button.getBoundingClientRect();
    menu.style.margin = "0";
    menu.style.right = "auto";
    menu.style.bottom = "auto";
    var width = menu.offsetWidth;
    var left = Math.min(Math.max(8, r.right - width), window.innerWidth - width - 8);
    var top = r.bottom + 4;
    if (top + menu.offsetHeight > window.innerHeight - 8) top = Math.max(8, r.top - menu.offsetHeight - 4);
    menu.style.left = left + "px";
    menu.style.top = top + "px";
  }, true);

  function closeMenuOf(el) {
    var menu = el.closest && el.closest(".menu[popover]");
    if (menu && menu.matches(":popover-open")) menu.hidePopover();
  }

  // ---- Choosing several rows ------------------------------------------------------------------

  // Rows' checkboxes ([data-select-row], in a form[data-bulk] by their form= attribute) keep their
  // ticks while the rows are swapped in again over the websocket; [data-select-all] ticks the page.
  var selected = new Set();

  function syncSelection() {
    var boxes = document.querySelectorAll("[data-select-row]");
    var shown = 0;
    boxes.forEach(function (box) {
      box.checked = selected.has(box.value);
      if (box.checked) shown += 1;
    });
    var all = document.querySelector("[data-select-all]");
    if (all) {
      all.checked = boxes.length > 0 && shown === boxes.length;
      all.indeterminate = shown > 0 && shown < boxes.length;
    }
    // Only ticks on the page count: the form sends the boxes it can see.
    document.querySelectorAll("[data-bulk-count]").forEach(function (el) {
      el.textContent = shown === 0 ? "None selected" : shown + " selected";
    });
  }

  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t.matches && t.matches("[data-select-row]")) {
      if (t.checked) selected.add(t.value); else selected.delete(t.value);
      syncSelection();
    } else if (t.matches && t.matches("[data-select-all]")) {
      document.querySelectorAll("[data-select-row]").forEach(function (box) {
        if (t.checked) selected.add(box.value); else selected.delete(box.value);
      });
      syncSelection();
    }
  });
  document.addEventListener("htmx:wsAfterMessage", syncSelection);

  // ---- Clicks and keys, delegated -------------------------------------------------------------

  document.addEventListener("click", function (e) {
    var t = e.target;
    if (!t.closest) return;

    var copy = t.closest("[data-copy]");
    if (copy) { copyFrom(copy); return; }

    var dismissBtn = t.closest("[data-dismiss]");
    if (dismissBtn) { dismiss(dismissBtn.closest(".toast") || dismissBtn.parentElement); return; }

    var themeBtn = t.closest("[data-theme-toggle]");
    if (themeBtn) {
      var next = nextTheme(themeBtn.dataset.choice || storedTheme());
      setTheme(next);
      announce("Colour theme: " + next);
      return;
    }

    var menuBtn = t.closest(".menu-toggle");
    if (menuBtn) {
      menuBtn.setAttribute("aria-expanded", String(menuBtn.getAttribute("aria-expanded") !== "true"));
      return;
    }

    var sortBtn = t.closest("[data-sort-column]");
    if (sortBtn) { toggleSort(sortBtn); return; }

    var tabLink = t.closest("[data-tabs] [data-tab]");
    if (tabLink && !e.ctrlKey && !e.metaKey && !e.shiftKey && e.button === 0) {
      // detail is 0 for a click made with the keyboard (Enter on the link).
      if (showTab(tabLink.closest("[data-tabs]"), tabLink.dataset.tab, e.detail > 0, true)) e.preventDefault();
      return;
    }

    var confirmBtn = t.closest("[data-confirm]");
    if (confirmBtn) { closeMenuOf(confirmBtn); openConfirm(confirmBtn); return; }

    var menuItem = t.closest(".menu .menu__item");
    if (menuItem) closeMenuOf(menuItem);

    if (!nativeCommands) {
      var cmdBtn = t.closest("button[commandfor]");
      if (cmdBtn) { runCommand(cmdBtn); return; }
    }

    // A click on the backdrop lands on the <dialog> itself, outside its box: cancel. Browsers
    // that know closedby="any" do this already.
    if (t.tagName === "DIALOG" && t.open && !("closedBy" in t)) {
      var r = t.getBoundingClientRect();
      if (e.clientX < r.left || e.clientX > r.right || e.clientY < r.top || e.clientY > r.bottom) t.close();
    }
  });

  document.addEventListener("keydown", function (e) {
    if (e.key !== "Escape") return;
    var open = document.querySelector(".menu-toggle[aria-expanded='true']");
    if (open && !document.querySelector("dialog[open]")) {
      open.setAttribute("aria-expanded", "false");
      open.focus();
    }
  });

  // ---- Page start -----------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", function () {
    applyTheme(storedTheme());
    renderLive();
    syncShown(document);

    // Live regions only announce changes, so messages that came with the page (say,
    // "Instance created" after a redirect) are read out through the announcer instead.
    var box = document.getElementById("messages");
    if (box && box.children.length) {
      var texts = [];
      Array.prototype.forEach.call(box.children, function (el) {
        var label = el.querySelector("[role='img']");
        var text = el.querySelector(".toast__text");
        texts.push((label ? label.getAttribute("aria-label") + ": " : "") + (text ? text.textContent.trim() : ""));
        scheduleAutohide(el);
      });
      announce(texts.join(" "));
    }

    focusFirstInvalid(document);
    syncSelection();
  });

  window.sfcloud = { toast: toast, setTheme: setTheme, copy: copyText };
})();
