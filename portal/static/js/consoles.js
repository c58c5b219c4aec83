// The instance page's consoles: serial (xterm.js) and graphical (noVNC), and the pop-out window.
//
// Each connection asks the portal for a one-time ticket (a POST on the logged-in session), opens
// the console websocket and sends the ticket as its first message, so a ticket never appears in a
// URL, a log or a Referer. After a dropped connection the page reconnects by itself with a fresh
// ticket, unless the server said why it closed (ended by an administrator, idle, not allowed).
// window.term and window.rfb are exposed for tests and for the curious.
//
// The consoles start when their tab is first shown, and take the keyboard only when the person
// chooses them (a click in the screen, a pointer's click on the tab, or "Type in the console"):
// Tab never walks into a terminal, and Ctrl+] (as in virsh console and telnet) hands the keyboard
// back to the page, so every button stays reachable from the keyboard (WCAG 2.1.2).

const FINAL_CODES = new Set([4000, 4001, 4003, 4004, 4008, 4009, 4012, 4401]);
// Not failures: the instance is off, and its console opens again once it is on.
const STOPPED_CODES = new Set([4009, 4010]);
const STOPPED = "The instance is not running: its console opens by itself once it is on.";
const REASONS = {
  4000: "Ended by an administrator.",
  4001: "Closed after a long time without input.",
  4002: "Closed: this browser fell too far behind.",
  4003: "The console ticket was refused.",
  4004: "No such instance.",
  4008: "Too many consoles open: close one first.",
  4009: STOPPED,
  4010: "The instance is not running (it stopped): its console opens again once it is on.",
  4011: "The instance's node does not answer.",
  4012: "The console broke the protocol.",
  4013: "Your access changed.",
};

const root = document.getElementById("console");

function csrfToken() {
  try {
    return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
  } catch (e) {
    return "";
  }
}

async function fetchTicket(kind) {
  const url = root.dataset.ticketUrl.replace("KIND", kind);
  const response = await fetch(url, {
    method: "POST",
    headers: { "X-CSRFToken": csrfToken() },
    credentials: "same-origin",
    cache: "no-store",
  });
  let body = {};
  try { body = await response.json(); } catch (e) { /* not JSON: a proxy's error page */ }
  if (!response.ok) {
    const error = new Error(body.error || `the portal answered ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

// One console connection with reconnects. `handlers.ready(ws, info)` gets the open, ticketed
// socket; `handlers.closed()` runs whenever it ends.
class ConsoleLink {
  constructor(kind, pane, handlers) {
    this.kind = kind;
    this.pane = pane;
    this.handlers = handlers;
    this.ws = null;
    this.wanted = false;
    this.delay = 1000;
    this.timer = null;
    this.status = pane.querySelector("[data-status]");
    this.connectBtn = pane.querySelector("[data-act='connect']");
    this.disconnectBtn = pane.querySelector("[data-act='disconnect']");
    this.connectBtn.addEventListener("click", () => this.connect());
    this.disconnectBtn.addEventListener("click", () => this.disconnect());
  }

  show(state, text) {
    this.status.dataset.state = state;
    this.status.textContent = text;
    const live = state === "connected" || state === "connecting" || state === "reconnecting";
    this.connectBtn.hidden = live;
    this.disconnectBtn.hidden = !live;
  }

  async connect() {
    this.wanted = true;
    clearTimeout(this.timer);
    this.show("connecting", "Connecting…");
    let info;
    try {
      info = await fetchTicket(this.kind);
    } catch (error) {
      if (error.status === 409) {
        // Not running: nothing is wrong, it just has no console now.
        this.wanted = false;
        this.show("idle", STOPPED);
        return;
      }
      // 4xx (not allowed, too many) will not fix itself; 5xx may (node restarting).
      if (error.status && error.status < 500 && error.status !== 429) {
        this.wanted = false;
        this.show("closed", error.message.charAt(0).toUpperCase() + error.message.slice(1) + ".");
      } else {
        this.retry(error.message);
      }
      return;
    }
    if (!this.wanted) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}${info.websocket}`);
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => ws.send(JSON.stringify({ ticket: info.ticket }));
    ws.onmessage = (event) => {
      if (typeof event.data !== "string") return;
      const message = JSON.parse(event.data);
      if (message.type !== "ready") return;
      this.delay = 1000;
      this.show("connected", message.read_only ? "Connected, read-only" : "Connected");
      ws.onmessage = null;
      ws.onclose = null;
      this.handlers.ready(ws, message);
      // Whoever took the socket over may have set its own onclose; ours still runs.
      ws.addEventListener("close", (e) => this.closed(ws, e));
    };
    ws.onclose = (e) => this.closed(ws, e);
  }

  closed(ws, event) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.handlers.closed();
    if (!this.wanted) { this.show("idle", "Not connected"); return; }
    if (STOPPED_CODES.has(event.code)) {
      this.wanted = false;
      this.show("idle", REASONS[event.code]);
      return;
    }
    if (FINAL_CODES.has(event.code)) {
      this.wanted = false;
      this.show("closed", event.reason || REASONS[event.code] || "Closed.");
      return;
    }
    this.retry(REASONS[event.code] || "Connection lost.");
  }

  retry(why) {
    const seconds = Math.round(this.delay / 1000);
    this.show("reconnecting", `${why} Reconnecting in ${seconds} s…`);
    this.timer = setTimeout(() => this.connect(), this.delay);
    this.delay = Math.min(this.delay * 2, 15000);
  }

  disconnect() {
    this.wanted = false;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
    else this.show("idle", "Not connected");
  }
}

function fullscreen(pane) {
  if (document.fullscreenElement) document.exitFullscreen();
  else if (pane.requestFullscreen) pane.requestFullscreen();
}

function askText(pane) {
  const dialog = pane.querySelector("[data-paste-dialog]");
  const area = dialog.querySelector("[data-paste-text]");
  area.value = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "paste" ? area.value : null),
      { once: true });
    dialog.showModal();
  });
}

// ---- Serial ---------------------------------------------------------------------------------

// Ctrl+] hands the keyboard back to the page (the key virsh console and telnet use to escape).
function isLeaveKey(e) {
  return e.type === "keydown" && e.ctrlKey && !e.altKey && !e.metaKey &&
    (e.key === "]" || e.code === "BracketRight");
}

function startSerial(pane) {
  const screen = pane.querySelector("[data-screen]");
  const viewers = pane.querySelector("[data-viewers]");
  const typeButton = pane.querySelector("[data-act='focus']");
  const term = new window.Terminal({
    convertEol: false, cursorBlink: true, scrollback: 5000, fontSize: 14,
    fontFamily: getComputedStyle(document.documentElement).getPropertyValue("--font-mono") || "monospace",
  });
  const fit = new window.FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(screen);
  // Tab walks past the terminal: it is entered by choice (a click, the button), never by accident.
  if (term.textarea) term.textarea.tabIndex = -1;
  fit.fit();
  new ResizeObserver(() => { if (screen.offsetParent) fit.fit(); }).observe(screen);
  window.term = term;

  let socket = null;
  let readOnly = false;
  // Bytes of the next binary messages that are replayed scrollback (the agent says how many
  // first), and how many writes of them xterm is still parsing. While it parses scrollback, what
  // it would answer (a cursor position report for a replayed ESC[6n, say) is not sent: the guest
  // asked that long ago, and an answer now lands in whatever reads its console at the moment
  // (after a power cycle, the new boot's shell: "8;16R").
  let replayLeft = 0;
  let replaying = 0;
  const encoder = new TextEncoder();
  const send = (text) => {
    if (replaying > 0) return;
    if (socket && socket.readyState === WebSocket.OPEN && !readOnly) socket.send(encoder.encode(text));
  };
  term.onData(send);
  term.onBinary((data) => send(data));

  const write = (bytes, replayed) => {
    if (!replayed) { term.write(bytes); return; }
    replaying += 1;
    term.write(bytes, () => { replaying -= 1; });
  };

  const leave = () => { term.blur(); typeButton.focus(); };
  const copySelection = () => {
    const text = term.getSelection();
    if (text) window.sfcloud.copy(text).then(() => window.sfcloud.toast("Copied.", "success"));
  };
  const paste = async () => {
    let text = null;
    if (navigator.clipboard && window.isSecureContext) {
      try { text = await navigator.clipboard.readText(); } catch (e) { text = null; }
    }
    if (text === null) text = await askText(pane);
    if (text) term.paste(text);
    term.focus();
  };
  term.attachCustomKeyEventHandler((e) => {
    if (isLeaveKey(e)) { e.preventDefault(); leave(); return false; }
    if (e.type === "keydown" && e.ctrlKey && e.shiftKey && e.code === "KeyC") { copySelection(); return false; }
    if (e.type === "keydown" && e.ctrlKey && e.shiftKey && e.code === "KeyV") { paste(); return false; }
    return true;
  });
  typeButton.addEventListener("click", () => term.focus());
  pane.querySelector("[data-act='copy']").addEventListener("click", copySelection);
  pane.querySelector("[data-act='paste']").addEventListener("click", paste);
  pane.querySelector("[data-act='fullscreen']").addEventListener("click", () => fullscreen(pane));

  const link = new ConsoleLink("serial", pane, {
    ready(ws, info) {
      socket = ws;
      readOnly = info.read_only;
      term.options.disableStdin = readOnly;
      // The server replays the recent scrollback first: start from a clean screen so a
      // reconnect shows it once.
      term.reset();
      replayLeft = 0;
      ws.onmessage = (event) => {
        if (typeof event.data === "string") {
          const message = JSON.parse(event.data);
          if (message.type === "viewers") {
            viewers.textContent = message.count > 1 ? `${message.count} people watching` : "";
          } else if (message.type === "scrollback") {
            replayLeft = Number(message.bytes) || 0;
          }
          return;
        }
        const bytes = new Uint8Array(event.data);
        if (replayLeft > 0) {
          const replayed = bytes.subarray(0, replayLeft);
          replayLeft -= replayed.length;
          write(replayed, true);
          if (replayed.length < bytes.length) write(bytes.subarray(replayed.length), false);
        } else {
          write(bytes, false);
        }
      };
    },
    closed() { socket = null; viewers.textContent = ""; },
  });
  return { link, term };
}

// ---- Graphical (noVNC) ------------------------------------------------------------------------

// X keysyms (the ones not equal to their Latin-1 code point).
const XK = { Return: 0xff0d, Tab: 0xff09, BackSpace: 0xff08, Shift_L: 0xffe1, Control_L: 0xffe3,
  Alt_L: 0xffe9, ISO_Level3_Shift: 0xfe03, Delete: 0xffff, F1: 0xffbe };

// Pasted text becomes key presses on a keyboard the guest reads with its own layout: for each
// character, which key (KeyboardEvent.code) and modifiers type it on that layout.
const LAYOUTS = (() => {
  const rows = {
    us: ["`1234567890-=", "qwertyuiop[]\\", "asdfghjkl;'", "zxcvbnm,./",
      "~!@#$%^&*()_+", "QWERTYUIOP{}|", "ASDFGHJKL:\"", "ZXCVBNM<>?"],
    gb: ["`1234567890-=", "qwertyuiop[]#", "asdfghjkl;'", "zxcvbnm,./",
      "¬!\"£$%^&*()_+", "QWERTYUIOP{}~", "ASDFGHJKL:@", "ZXCVBNM<>?"],
    de: ["^1234567890ß´", "qwertzuiopü+#", "asdfghjklöä", "yxcvbnm,.-",
      "°!\"§$%&/()=?`", "QWERTZUIOPÜ*'", "ASDFGHJKLÖÄ", "YXCVBNM;:_"],
    fr: ["²&é\"'(-è_çà)=", "azertyuiop^$*", "qsdfghjklmù", "wxcvbn,;:!",
      " 1234567890°+", "AZERTYUIOP¨£µ", "QSDFGHJKLM%", "WXCVBN?./§"],
  };
  const altgr = {
    gb: {}, us: {},
    de: { "@": "KeyQ", "€": "KeyE", "{": "Digit7", "[": "Digit8", "]": "Digit9", "}": "Digit0", "\\": "Minus", "~": "BracketRight", "|": "IntlBackslash" },
    fr: { "~": "Digit2", "#": "Digit3", "{": "Digit4", "[": "Digit5", "|": "Digit6", "`": "Digit7", "\\": "Digit8", "@": "Digit0", "]": "Minus", "}": "Equal", "€": "KeyE" },
  };
  const codes = [
    ["Backquote", ..."1234567890".split("").map((d) => "Digit" + d), "Minus", "Equal"],
    [..."QWERTYUIOP".split("").map((c) => "Key" + c), "BracketLeft", "BracketRight", "Backslash"],
    [..."ASDFGHJKL".split("").map((c) => "Key" + c), "Semicolon", "Quote"],
    [..."ZXCVBNM".split("").map((c) => "Key" + c), "Comma", "Period", "Slash"],
  ];
  const layouts = {};
  for (const [name, r] of Object.entries(rows)) {
    const map = new Map();
    for (let shift = 0; shift < 2; shift++) {
      for (let row = 0; row < 4; row++) {
        [...r[row + shift * 4]].forEach((ch, i) => {
          if (ch !== " " && !map.has(ch)) map.set(ch, { code: codes[row][i], shift: !!shift, altgr: false });
        });
      }
    }
    for (const [ch, code] of Object.entries(altgr[name])) map.set(ch, { code, shift: false, altgr: true });
    map.set(" ", { code: "Space", shift: false, altgr: false });
    layouts[name] = map;
  }
  return layouts;
})();

function keysymOf(ch) {
  const cp = ch.codePointAt(0);
  if (ch === "\n") return XK.Return;
  if (ch === "\t") return XK.Tab;
  return (cp >= 0x20 && cp <= 0x7e) || (cp >= 0xa0 && cp <= 0xff) ? cp : 0x01000000 | cp;
}

async function typeText(rfb, text, layoutName) {
  const layout = LAYOUTS[layoutName] || LAYOUTS.us;
  for (const ch of text.replace(/\r\n?/g, "\n")) {
    const keysym = keysymOf(ch);
    const key = ch === "\n" ? { code: "Enter" } : ch === "\t" ? { code: "Tab" } : layout.get(ch);
    if (!key) { rfb.sendKey(keysym, null); continue; }  // not on this layout: let the server map it
    if (key.shift) rfb.sendKey(XK.Shift_L, "ShiftLeft", true);
    if (key.altgr) rfb.sendKey(XK.ISO_Level3_Shift, "AltRight", true);
    rfb.sendKey(keysym, key.code);
    if (key.altgr) rfb.sendKey(XK.ISO_Level3_Shift, "AltRight", false);
    if (key.shift) rfb.sendKey(XK.Shift_L, "ShiftLeft", false);
    // Give a slow (emulated) guest time to keep up with long pastes.
    await new Promise((resolve) => setTimeout(resolve, 8));
  }
}

// noVNC is some forty small modules: fetch them while the page loads (on fresh connections),
// and once more on demand if that failed (say, a kept-alive connection closed under a request).
let noVNC = root ? import("../vendor/novnc/core/rfb.js") : null;
if (noVNC) noVNC.catch(() => { noVNC = null; });
async function loadNoVNC() {
  try {
    return (await (noVNC || import("../vendor/novnc/core/rfb.js"))).default;
  } catch (error) {
    noVNC = null;
    return (await import(`../vendor/novnc/core/rfb.js?retry=${Date.now()}`)).default;
  }
}

function startVnc(pane) {
  const screen = pane.querySelector("[data-screen]");
  const scale = pane.querySelector("[data-scale]");
  const layout = pane.querySelector("[data-layout]");
  let rfb = null;
  let RFB = null;

  try {
    const saved = localStorage.getItem("sfcloud-vnc-layout");
    if (saved && LAYOUTS[saved]) layout.value = saved;
  } catch (e) { /* storage off: the default holds */ }
  layout.addEventListener("change", () => {
    try { localStorage.setItem("sfcloud-vnc-layout", layout.value); } catch (e) { /* fine */ }
  });

  // noVNC takes every key while its screen has the focus; Ctrl+] is ours (caught first).
  const typeButton = pane.querySelector("[data-act='focus']");
  screen.addEventListener("keydown", (e) => {
    if (!isLeaveKey(e)) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    if (rfb) rfb.blur();
    typeButton.focus();
  }, true);
  typeButton.addEventListener("click", () => { if (rfb) rfb.focus(); });

  const link = new ConsoleLink("vnc", pane, {
    ready(ws, info) {
      // noVNC takes over the socket here: from now on it carries only RFB.
      rfb = new RFB(screen, ws, { shared: true });
      rfb.viewOnly = info.read_only;
      rfb.scaleViewport = scale.checked;
      rfb.resizeSession = false;
      rfb.focusOnClick = true;
      rfb.addEventListener("connect", () => { screen.dataset.connected = "true"; });
      rfb.addEventListener("disconnect", () => { delete screen.dataset.connected; });
      window.rfb = rfb;
    },
    closed() { rfb = null; window.rfb = null; },
  });
  // Wait for noVNC (loaded with the page) before the first connection.
  const connect = link.connect.bind(link);
  link.connect = async () => {
    if (!RFB) {
      link.wanted = true;
      link.show("connecting", "Loading…");
      try {
        RFB = await loadNoVNC();
      } catch (error) {
        link.wanted = false;
        link.show("closed", `Could not load the VNC viewer (${error.message}).`);
        return undefined;
      }
    }
    return connect();
  };

  scale.addEventListener("change", () => { if (rfb) rfb.scaleViewport = scale.checked; });
  pane.querySelector("[data-act='ctrl-alt-del']").addEventListener("click", () => rfb && rfb.sendCtrlAltDel());
  pane.querySelector("[data-act='fkey']").addEventListener("click", () => {
    if (!rfb) return;
    const n = Number(pane.querySelector("[data-fkey]").value);
    const withCtrlAlt = pane.querySelector("[data-fkey-ctrl-alt]").checked;
    if (withCtrlAlt) { rfb.sendKey(XK.Control_L, "ControlLeft", true); rfb.sendKey(XK.Alt_L, "AltLeft", true); }
    rfb.sendKey(XK.F1 + n - 1, "F" + n);
    if (withCtrlAlt) { rfb.sendKey(XK.Alt_L, "AltLeft", false); rfb.sendKey(XK.Control_L, "ControlLeft", false); }
    rfb.focus();
  });
  pane.querySelector("[data-act='paste-keys']").addEventListener("click", async () => {
    const text = await askText(pane);
    if (text && rfb) { await typeText(rfb, text, layout.value); rfb.focus(); }
  });
  pane.querySelector("[data-act='fullscreen']").addEventListener("click", () => fullscreen(pane));
  const popout = pane.querySelector("[data-act='popout']");
  if (popout) {
    popout.addEventListener("click", () => {
      window.open(popout.dataset.url, `console-${root.dataset.instance}`, "popup,width=1060,height=860");
      link.disconnect();  // one graphical session is enough; the window has it now
    });
  }
  return { link };
}

// ---- Page start -------------------------------------------------------------------------------

// An instance page without a console (a deleted instance) has nothing to start. On the instance
// page the consoles start when their tab is first shown; the pop-out window starts at once.
function start(pointer) {
  const serialPane = root.querySelector("[data-console='serial']");
  const vncPane = root.querySelector("[data-console='vnc']");
  const serial = serialPane ? startSerial(serialPane) : null;
  const vnc = vncPane ? startVnc(vncPane) : null;
  let running = root.dataset.running === "true";

  function choose(kind, focus) {
    root.querySelectorAll("[data-console-tab]").forEach((tab) => {
      const on = tab.dataset.consoleTab === kind;
      tab.setAttribute("aria-selected", String(on));
      if (on) tab.setAttribute("aria-current", "page"); else tab.removeAttribute("aria-current");
    });
    if (serialPane) serialPane.hidden = kind !== "serial";
    if (vncPane) vncPane.hidden = kind !== "vnc";
    const chosen = kind === "serial" ? serial : vnc;
    if (chosen && running && !chosen.link.wanted) chosen.link.connect();
    if (focus && kind === "serial" && serial) requestAnimationFrame(() => serial.term.focus());
  }

  root.querySelectorAll("[data-console-tab]").forEach((tab) => {
    // A pointer's click also gives the terminal the keyboard; Enter on the tab leaves it here.
    tab.addEventListener("click", (e) => { e.preventDefault(); choose(tab.dataset.consoleTab, e.detail > 0); });
  });

  // Shown again later by a pointer's click on its tab: the keyboard goes to what is showing.
  const panel = root.closest("[data-tab-panel]");
  document.addEventListener("sfcloud:tabshown", (e) => {
    if (!panel || e.detail.tab !== panel.dataset.tabPanel || !e.detail.pointer) return;
    if (serial && serialPane && !serialPane.hidden) requestAnimationFrame(() => serial.term.focus());
  });

  if (root.dataset.autoconnect === "vnc") {
    if (vnc) vnc.link.connect();
  } else if (running) {
    choose(location.hash === "#console-vnc" ? "vnc" : "serial", pointer);
  } else {
    if (serial) serial.link.show("idle", STOPPED);
  }

  // The instance page's power section is kept live (swapped in by htmx when the power state
  // changes): once the instance is on, open the console that is showing.
  const power = document.getElementById("section-power");
  if (power && power.parentElement) {
    let last = power.dataset.power;
    new MutationObserver(() => {
      const now = (document.getElementById("section-power") || {}).dataset;
      const state = now ? now.power : null;
      if (state === last) return;
      last = state;
      const live = state === "on" || state === "paused";
      if (!live || running) { running = live; return; }
      running = true;
      root.dataset.running = "true";
      const note = root.querySelector("[data-console-note]");
      if (note) note.hidden = true;
      const shown = vncPane && !vncPane.hidden ? vnc : serial;
      if (shown && !shown.link.wanted) shown.link.connect();
    }).observe(power.parentElement, { childList: true, subtree: true, attributes: true,
      attributeFilter: ["data-power"] });
  }
}

if (root) {
  const panel = root.closest("[data-tab-panel]");
  if (!panel || !panel.hidden) {
    start(false);
  } else {
    const begin = (e) => {
      if (e.detail.tab !== panel.dataset.tabPanel) return;
      document.removeEventListener("sfcloud:tabshown", begin);
      start(e.detail.pointer);
    };
    document.addEventListener("sfcloud:tabshown", begin);
  }
}
