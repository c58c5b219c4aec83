// The Images page's upload form: sends the chosen file a piece at a time, shows how far it got,
// and carries on where it stopped when the connection drops (or the page is reloaded and the
// same file chosen again). The portal answers each piece with the total it holds, and tells the
// total again when asked, so a piece that arrived but whose answer was lost is not sent twice.
(function () {
  "use strict";

  var PIECE = 2 * 1024 * 1024;  // the most the portal takes per request (portal/bodylimit.py)
  var RETRIES = 8;
  var PLACEHOLDER = "00000000-0000-0000-0000-000000000000";

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch (e) {
      return "";
    }
  }

  function sleep(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  // A failure the next attempt may not repeat (no answer at all, or the portal or node busy).
  function Retryable(message) { this.message = message; }

  function call(method, url, body, headers) {
    var options = { method: method, credentials: "same-origin",
                    headers: Object.assign({ "X-CSRFToken": csrfToken() }, headers || {}) };
    if (body !== undefined) options.body = body;
    return fetch(url, options).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (response.ok) return data;
        var message = data.error || (response.status + " " + response.statusText);
        if (response.status >= 500) throw new Retryable(message);
        throw new Error(message);
      });
    }, function (error) {
      throw new Retryable("the connection dropped (" + error.message + ")");
    });
  }

  function rememberedKey(file) {
    return "sfcloud-upload:" + [file.name, file.size, file.lastModified].join(":");
  }

  function remembered(file) {
    try { return localStorage.getItem(rememberedKey(file)); } catch (e) { return null; }
  }

  function remember(file, uuid) {
    try {
      if (uuid) localStorage.setItem(rememberedKey(file), uuid);
      else localStorage.removeItem(rememberedKey(file));
    } catch (e) { /* it only makes reloading the page start over */ }
  }

  function Upload(form) {
    this.form = form;
    this.urls = {
      start: form.dataset.startUrl, status: form.dataset.statusUrl,
      chunk: form.dataset.chunkUrl, finish: form.dataset.finishUrl
    };
    this.progress = form.querySelector("progress");
    this.percent = form.querySelector("[data-upload-percent]");
    this.box = form.querySelector("[data-upload-progress]");
    this.status = form.querySelector("[data-upload-status]");
    this.button = form.querySelector("[data-upload-button]");
  }

  Upload.prototype.url = function (which, uuid) {
    return this.urls[which].replace(PLACEHOLDER, uuid);
  };

  Upload.prototype.say = function (text) {
    this.status.textContent = text;
  };

  Upload.prototype.show = function (done, total) {
    var pct = total ? Math.floor(done * 100 / total) : 100;
    this.box.hidden = false;
    this.progress.value = pct;
    this.progress.textContent = pct + "%";
    this.percent.textContent = pct + "%";
    this.form.dataset.sent = String(done);
  };

  // Where the portal's copy ends; retried while the connection is down.
  Upload.prototype.received = async function (uuid) {
    for (var attempt = 1; ; attempt++) {
      try {
        return (await call("GET", this.url("status", uuid))).size;
      } catch (error) {
        if (!(error instanceof Retryable) || attempt > RETRIES) throw error;
        await sleep(Math.min(1000 * attempt, 10000));
      }
    }
  };

  Upload.prototype.begin = async function (file) {
    var uuid = remembered(file);
    if (uuid) {
      try {
        var offset = await this.received(uuid);
        if (offset <= file.size) return { uuid: uuid, offset: offset };
      } catch (e) { /* gone or expired: start again */ }
    }
    uuid = (await call("POST", this.urls.start)).uuid;
    remember(file, uuid);
    return { uuid: uuid, offset: 0 };
  };

  Upload.prototype.run = async function (file, name) {
    var started = await this.begin(file);
    var uuid = started.uuid;
    var offset = started.offset;
    this.form.dataset.uploadUuid = uuid;
    this.show(offset, file.size);
    this.say(offset ? "Carrying on where the last attempt stopped." : "Uploading " + file.name + ".");
    var failures = 0;
    while (offset < file.size) {
      try {
        var answer = await call("POST", this.url("chunk", uuid), file.slice(offset, offset + PIECE),
                                { "Content-Type": "application/octet-stream" });
        offset = answer.size;
        failures = 0;
      } catch (error) {
        if (!(error instanceof Retryable) || ++failures > RETRIES) throw error;
        this.form.dataset.resumed = String(Number(this.form.dataset.resumed || 0) + 1);
        this.say("The connection dropped; resuming…");
        await sleep(Math.min(1000 * failures, 10000));
        offset = await this.received(uuid);
      }
      if (offset > file.size) throw new Error("the portal holds more bytes than the file has");
      this.show(offset, file.size);
    }
    this.say("Checking the upload and making the image…");
    var fields = new FormData();
    fields.append("name", name || file.name);
    var made = await call("POST", this.url("finish", uuid), fields);
    remember(file, null);
    this.say("Done.");
    window.location.assign(made.url);
  };

  document.addEventListener("submit", function (event) {
    var form = event.target.closest("[data-upload]");
    if (!form) return;
    event.preventDefault();
    var input = form.querySelector("input[type=file]");
    var file = input.files && input.files[0];
    if (!file) return;
    var upload = new Upload(form);
    upload.button.disabled = true;
    upload.run(file, form.querySelector("input[name=name]").value.trim()).catch(function (error) {
      upload.say("The upload failed: " + error.message);
      form.dataset.failed = "true";
    }).finally(function () {
      upload.button.disabled = false;
    });
  });
})();
